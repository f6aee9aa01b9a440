"""A store's landscape summary, computed block by block over its cells.

Each cell is visited in blocks of ``block_px``; a block is read with the forest-patch
margin from the zone's lattice (so a patch crossing a cell edge is judged whole), the
forest definition is applied, and only the block's own pixels inside the region (and
the zone's band of longitude, so that two zones never count one place twice) are
added up. Memory holds one block and its margin, whatever the region's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rasterio.features import geometry_mask
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from serving.areas import M2_PER_HA, pixel_areas
from serving.baseline.change import DRIVERS, FOREST
from serving.baseline.forest_patches import forest_in_patches, margin_px
from serving.store.grid import from_lonlat
from serving.store.reader import MapSource

DEFAULT_BLOCK_PX = 1024


def store_landscape(source: MapSource, region: BaseGeometry, min_forest_ha: float,
                    block_px: int = DEFAULT_BLOCK_PX,
                    on_block: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Transition hectares and forest totals of the region, with the patch rule.

    Args:
        source: The store.
        region: The region in longitude/latitude.
        min_forest_ha: Smallest forest patch at the reference date.
        block_px: Block side in pixels (memory per block).
        on_block: Called with (blocks done, blocks in all).
    """
    schema = source.schema
    n = schema.num_classes
    forest = schema.code_of(FOREST)
    matrix = np.zeros((n, n))
    forest_to = np.zeros(n)  # forest in patches at the reference -> current class
    small = 0.0
    blocks = [(zone, cell, r, c) for zone in source.zones for cell in zone.cells
              if not cell.failed
              for r in range(0, cell.height, block_px) for c in range(0, cell.width, block_px)]
    local_region = {id(zone): from_lonlat(
        [region if zone.band is None else region.intersection(zone.band)], zone.crs)[0]
        for zone in source.zones}
    for done, (zone, cell, r, c) in enumerate(blocks, 1):
        local = local_region[id(zone)]
        margin = margin_px(min_forest_ha, zone.resolution**2)
        h, w = min(block_px, cell.height - r), min(block_px, cell.width - c)
        outer = Window(cell.col_off + c - margin, cell.row_off + r - margin,
                       w + 2 * margin, h + 2 * margin)
        with zone.reader() as reader:
            ref, _ = reader.read("classes", "reference", outer)
            cur, _ = reader.read("classes", "current", outer)
        areas = pixel_areas(zone.crs, zone.window_transform(outer), *ref.shape)
        patch = forest_in_patches(ref == forest, areas, min_forest_ha)
        core = (slice(margin, margin + h), slice(margin, margin + w))
        inner = Window(cell.col_off + c, cell.row_off + r, w, h)
        keep = ~geometry_mask([local], (h, w), zone.window_transform(inner))
        ref, cur, areas, patch = ref[core], cur[core], areas[core], patch[core]
        codes = ref.astype(np.int64)[keep] * n + cur[keep]
        matrix += np.bincount(codes, weights=areas[keep], minlength=n * n).reshape(n, n)
        lone = keep & (ref == forest) & ~patch & (cur != schema.nodata)
        small += float(areas[lone].sum())
        counted = keep & patch
        forest_to += np.bincount(cur[counted], weights=areas[counted], minlength=n)[:n]
        if on_block:
            on_block(done, len(blocks))
    matrix /= M2_PER_HA
    forest_to /= M2_PER_HA
    small /= M2_PER_HA
    valid = [k for k in range(n) if k != schema.nodata]
    # The transition matrix is of pixels as classified; the forest figures count
    # forest in patches of at least min_forest_ha only (small patches beside).
    loss = {name: float(forest_to[schema.code_of(name)])
            for name in DRIVERS if name in schema.names}
    return {
        "classes": schema.names,
        "transition_ha": matrix.tolist(),
        "forest_ref_ha": float(forest_to[valid].sum()),
        "forest_small_patches_ha": small,
        "stable_forest_ha": float(forest_to[forest]),
        "forest_loss_by_driver_ha": loss,
        "forest_loss_ha": float(sum(loss.values())),
        "forest_ref_unobserved_now_ha": float(matrix[forest, schema.nodata]),
        "nodata_ha": float(matrix[schema.nodata].sum() + matrix[valid, schema.nodata].sum()),
        "min_forest_ha": min_forest_ha,
    }

