"""Reference layers beside the model: the maps and alerts users trust, read plot by plot.

- :mod:`serving.references.spec`: layer specs (YAML): what a raster's values mean
  (forest at the cutoff, loss with its period, alerts with date and confidence); the
  specs that ship are in ``specs/``.
- :mod:`serving.references.decode`: what a layer's values mean, pixel by pixel.
- :mod:`serving.references.layers`: a spec over its rasters, measured per plot on the
  layer's own grid and CRS, by exact coverage and ground area.
- :mod:`serving.references.picture`: a layer drawn over a lon/lat box (the map page).
- :mod:`serving.references.convergence`: the model's verdict beside the layers', the
  review rule, and verdicts from the layers alone.
"""
