"""Plot checks: farm plots in, verdicts and evidence out, read from a region's store.

- :mod:`serving.plots.geolocation`: EUDR-style GeoJSON (points with ``Area``,
  polygons) parsed plot by plot, with flags and per-plot errors.
- :mod:`serving.plots.check`: per-plot records read window by window.
- :mod:`serving.plots.evidence`: a picture per plot for reviewers.
- :mod:`serving.plots.report_files`: the GeoJSON (producer properties untouched), CSV
  and JSON a check writes.

Checking plots needs no model and no imagery: only the windows each plot touches are
read from the store (:mod:`serving.store`). The forest definition (patches of at least
0.5 ha) is :mod:`serving.baseline.forest_patches`.
"""
