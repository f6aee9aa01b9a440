"""Plots in, verdicts out: the region's baseline store and EUDR plot checks.

- :mod:`serving.plots.geolocation`: EUDR-style GeoJSON (points with ``Area``,
  polygons) parsed plot by plot, with flags and per-plot errors.
- :mod:`serving.plots.grid`: the fixed grid of cells in each UTM zone.
- :mod:`serving.plots.store`: the store on disk (``store.json``, cells, COGs) and a
  reader that assembles any window of a zone from its cells.
- :mod:`serving.plots.patches`: the forest definition (patches of at least 0.5 ha).
- :mod:`serving.plots.check`: per-plot records read window by window.
- :mod:`serving.plots.landscape`: a store's landscape summary, block by block.
- :mod:`serving.plots.evidence`: a picture per plot for reviewers.
- :mod:`serving.plots.output`: GeoJSON (producer properties untouched), CSV, JSON.

Building a store needs a model and imagery (:mod:`serving.plots.build`); checking
plots needs neither: only the windows each plot touches are read.
"""
