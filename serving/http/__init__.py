"""HTTP: the BentoML service, its guards, tile payloads and the map page.

- :mod:`~serving.http.service`: the ``CacaoMap`` BentoML service.
- :mod:`~serving.http.settings`: every ``CACAOMAP_*`` setting, read once.
- :mod:`~serving.http.guards`: ASGI guards (hosts, token, body size, media types, load).
- :mod:`~serving.http.bentoml_fixes`: patches for BentoML behaviour, applied by the
  service.
- :mod:`~serving.http.tile_payload`: the ``tiles`` JSON payload (lists or base64).
- :mod:`~serving.http.map_page`: the map page (``/ui``) and what ``/analyze`` does.
- :mod:`~serving.http.browser_maps`: rasters as Web Mercator PNGs for the browser.
- :mod:`~serving.http.local_server`: a ``bentoml serve`` process on loopback (demo,
  benchmarks, tests).
- ``static/``: the page, its script and style, and vendored Leaflet.
"""
