"""Imagery as users get it: sources, cloud masks, harmonisation, composites.

The torch-free imagery side of the data flow (DESIGN.md, step 0), shared by the CLI,
training, the service and the Bento:

- :mod:`~serving.imagery.sources`: STAC items (files, catalogues, API search) read onto
  one grid with odc-stac as lazy :class:`~serving.imagery.sources.Acquisition` objects;
- :mod:`~serving.imagery.safe`: SAFE L2A folders made into STAC items;
- :mod:`~serving.imagery.geotiffs`: stacked GeoTIFFs with optional mask files;
- :mod:`~serving.imagery.masks`: SCL and the ukis-csmask cloud model, with a buffer;
- :mod:`~serving.imagery.harmonise`: the BOA offset of processing baseline 04.00+;
- :mod:`~serving.imagery.composite`: per-period median or best-pixel composites with a
  clear count, on dask, written as a COG with lineage.
"""
