"""The deforestation baseline: change between two class maps, per zone, with estimates.

- :mod:`~serving.baseline.change`: aligned class maps, transitions, zone statistics,
  verdicts.
- :mod:`~serving.baseline.zones`: reading and validating zones (farm plots).
- :mod:`~serving.baseline.report`: report.json, zones GeoJSON/CSV and map.png.
- :mod:`~serving.baseline.accuracy`: the Olofsson et al. stratified estimator.
- :mod:`~serving.baseline.sampling`: drawing a reference sample and estimating from it.
"""
