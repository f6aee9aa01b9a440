"""Imagery as users get it: sources, cloud masks, harmonisation, composites.

The room for the torch-free imagery side of the data flow (DESIGN.md, step 0): STAC
items and SAFE folders of Sentinel-2 L2A read onto one grid, cloud and shadow masks (SCL
or a cloud model), processing-baseline harmonisation, and per-period composites. It is
empty today: every input is still one pre-stacked GeoTIFF per date.
"""
