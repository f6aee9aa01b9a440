"""The region's baseline store, built once and read window by window.

Per cell and period a composite, a class map and its confidence, catalogued as STAC
items.

- :mod:`serving.store.grid`: the fixed grid of cells in each UTM zone.
- :mod:`serving.store.build`: building (or resuming) a store on dask.
- :mod:`serving.store.catalog`: the STAC catalogue of a store's cells, with lineage.
- :mod:`serving.store.reader`: the store on disk (``store.json``, cells, COGs) and a
  reader that assembles any window of a zone from its cells; a pair of class maps read
  the same way.
- :mod:`serving.store.landscape`: a store's landscape summary, block by block.

Building needs a model and imagery; reading needs neither.
"""
