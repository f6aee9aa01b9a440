"""Whole-scene classification: sliding windows, blended seams, a COG class map.

Windows of the contract's tile size overlap by ``overlap`` pixels. Each window's class
probabilities are weighted by a window that is 0 within ``overlap // 4`` pixels of an
edge shared with a neighbour and ramps to 1 over the next ``overlap // 4`` pixels, then
summed and renormalised: seams are blended, not cut, and the pixels a window sees with
too little context (zero padding at its inner edges) never count. For a model whose
receptive-field radius r is at most ``overlap // 4`` the stitched map therefore equals the
map of the scene classified whole, away from a margin of r pixels at the scene's own
edges (where a whole-scene run pads the input to a multiple of 32).

Memory holds one strip of window rows (classes x tile x width floats), not the scene.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.io import DatasetReader
from rasterio.windows import Window
from rich.progress import Progress

from serving.areas import AreaError, class_hectares, ground_pixel_size, pixel_areas
from serving.tiles import InputError, TileClassifier

#: Default largest scene accepted, in pixels (a full Sentinel-2 tile is 120.6 Mpx).
DEFAULT_MAX_PIXELS = 11_000 * 11_000
#: A scene's ground pixel size may differ from the training imagery's by this factor.
PIXEL_SIZE_TOLERANCE = 1.5


@dataclass
class SceneResult:
    """What classifying a scene produced.

    Attributes:
        path: The class-map COG.
        class_pixels: Pixel count per class code (nodata included).
        hectares: Ground hectares per class name (nodata included), or None when the
            scene has no CRS.
        width: Scene width.
        height: Scene height.
        crs: The scene's CRS as WKT, or None.
        windows: Number of windows classified.
    """

    path: Path
    class_pixels: dict[str, int]
    hectares: dict[str, float] | None
    width: int
    height: int
    crs: str | None
    windows: int = 0


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``tile`` (last one flush)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def edge_weights(start: int, size: int, length: int, overlap: int) -> NDArray[np.float32]:
    """1-D blending weight of a window: 0 near inner edges, ramping to 1 inside."""
    margin = overlap // 4
    ramp = max(overlap // 4, 1)
    d = np.arange(size, dtype=np.float32)
    w = np.ones(size, np.float32)
    if start > 0:  # an inner edge on the low side
        w = np.minimum(w, np.clip((d - margin + 1) / ramp, 0, 1))
    if start + size < length:  # an inner edge on the high side
        w = np.minimum(w, np.clip((size - 1 - d - margin + 1) / ramp, 0, 1))
    return w


def check_scene(
    src: DatasetReader, classifier: TileClassifier, max_pixels: int = DEFAULT_MAX_PIXELS,
    require_crs: bool = True,
) -> None:
    """Refuse a scene that breaks the contract, before reading any pixel.

    Raises:
        InputError: Naming the problem (size, bands, dtype, CRS, transform).
    """
    c = classifier.contract
    if src.width == 0 or src.height == 0:
        raise InputError(f"the scene is empty ({src.width} x {src.height} pixels)")
    if src.width * src.height > max_pixels:
        raise InputError(
            f"the scene declares {src.width} x {src.height} = {src.width * src.height:,} "
            f"pixels, over the limit of {max_pixels:,}"
        )
    if src.count != c.num_bands:
        raise InputError(f"expected {c.num_bands} bands ({', '.join(c.bands)}); "
                         f"the scene has {src.count}")
    if src.dtypes[0] != c.input_dtype:
        raise InputError(f"expected dtype {c.input_dtype}; the scene is {src.dtypes[0]}")
    if require_crs and src.crs is None:
        raise InputError("the scene has no CRS: its classes cannot be given in hectares")
    t = src.transform
    if t.b != 0 or t.d != 0:
        raise InputError("the scene's geotransform is rotated; warp it north-up first")
    trained = c.pixel_size_m
    if trained and src.crs is not None:
        size = ground_pixel_size(src.crs, t, src.height, src.width)
        if size is not None and not trained / PIXEL_SIZE_TOLERANCE <= size <= (
                trained * PIXEL_SIZE_TOLERANCE):
            raise InputError(
                f"the scene's pixels are {size:,.1f} m on the ground; the model was "
                f"trained on {trained:,.1f} m pixels: resample the scene first")


def _strips(src: DatasetReader, tile: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    for row in window_starts(src.height, tile, stride):
        height = min(tile, src.height)
        yield row, src.read(window=Window(0, row, src.width, height))


def classify_scene(
    src: DatasetReader,
    dst: str | Path,
    classifier: TileClassifier,
    overlap: int | None = None,
    batch_size: int = 8,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    require_crs: bool = True,
    progress: bool = False,
) -> SceneResult:
    """Classify an open scene into a Cloud Optimized GeoTIFF class map at ``dst``.

    The COG keeps the input's CRS and transform, carries the class colour table and
    marks nodata (code 0) as nodata. It is written to a temporary file and renamed, so a
    failed run leaves nothing at ``dst``.
    """
    check_scene(src, classifier, max_pixels, require_crs)
    contract = classifier.contract
    schema = contract.schema
    tile = contract.tile_size
    overlap = contract.overlap if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, {tile}); got {overlap}")
    stride = tile - overlap
    height, width = src.height, src.width
    th, tw = min(tile, height), min(tile, width)
    col_starts = window_starts(width, tile, stride)
    row_starts = window_starts(height, tile, stride)
    n_cls = schema.num_classes
    acc = np.zeros((n_cls, th, width), np.float32)
    wsum = np.zeros((th, width), np.float32)
    valid = np.zeros((th, width), bool)
    counts = np.zeros(n_cls, np.int64)
    hectares = np.zeros(n_cls, np.float64)
    has_area = src.crs is not None
    buf_start = 0
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".tif", dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp_cog = tmp.with_suffix(".cog.tif")
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1,
        "dtype": "uint8", "crs": src.crs, "transform": src.transform,
        "nodata": schema.nodata, "tiled": True, "blockxsize": 256, "blockysize": 256,
        "compress": "deflate",
    }
    try:
        with (
            rasterio.open(tmp, "w", **profile) as out,
            Progress(disable=not progress, transient=True) as bar,
        ):
            out.write_colormap(1, schema.colormap())
            # Lineage travels with the map: the model that made it and the scene's date.
            out.update_tags(
                CACAOMAP_MODEL=contract.name, CACAOMAP_MODEL_VERSION=contract.version,
                CACAOMAP_ONNX_SHA256=contract.onnx_sha256,
                CACAOMAP_MLFLOW_RUN_ID=contract.mlflow_run_id or "",
                **({"DATE": src.tags()["DATE"]} if "DATE" in src.tags() else {}),
            )
            task = bar.add_task("classifying scene", total=len(row_starts))

            def emit(rows: int) -> None:
                nonlocal acc, wsum, valid, buf_start
                if rows <= 0:
                    return
                probs = acc[:, :rows] / np.maximum(wsum[:rows], 1e-12)
                classes = probs.argmax(0).astype(np.uint8)
                classes[~valid[:rows]] = schema.nodata
                out.write(classes, 1, window=Window(0, buf_start, width, rows))
                counts[:] += np.bincount(classes.ravel(), minlength=n_cls)[:n_cls]
                if has_area:
                    areas = pixel_areas(src.crs, src.transform, rows, width, buf_start)
                    hectares[:] += class_hectares(classes, areas, n_cls)
                acc = np.roll(acc, -rows, axis=1)
                acc[:, -rows:] = 0
                wsum = np.roll(wsum, -rows, axis=0)
                wsum[-rows:] = 0
                valid = np.roll(valid, -rows, axis=0)
                valid[-rows:] = False
                buf_start += rows

            for row, strip in _strips(src, tile, stride):
                emit(row - buf_start)
                wy = edge_weights(row, th, height, overlap)
                tiles = np.stack([strip[:, :, c : c + tw] for c in col_starts])
                strip_valid = classifier.valid_mask(strip[None])[0]
                valid[:] |= strip_valid
                for b in range(0, len(col_starts), batch_size):
                    probs = classifier.probabilities(tiles[b : b + batch_size])
                    for i, c in enumerate(col_starts[b : b + batch_size]):
                        w = wy[:, None] * edge_weights(c, tw, width, overlap)[None, :]
                        acc[:, :, c : c + tw] += probs[i] * w
                        wsum[:, c : c + tw] += w
                bar.advance(task)
            emit(height - buf_start)
        rasterio.shutil.copy(
            tmp, tmp_cog, driver="COG", compress="DEFLATE", blocksize=512,
            overview_resampling="NEAREST",
        )
        os.replace(tmp_cog, dst)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_cog.unlink(missing_ok=True)
    names = schema.names
    return SceneResult(
        path=dst,
        class_pixels={names[i]: int(counts[i]) for i in range(n_cls)},
        hectares={names[i]: float(hectares[i]) for i in range(n_cls)} if has_area else None,
        width=width, height=height,
        crs=src.crs.to_wkt() if src.crs else None,
        windows=len(row_starts) * len(col_starts),
    )


def classify_file(
    path: str | Path, dst: str | Path, classifier: TileClassifier, **kwargs: object
) -> SceneResult:
    """Classify a GeoTIFF on disk (batch jobs, the offline CLI)."""
    with rasterio.open(path, driver="GTiff") as src:
        return classify_scene(src, dst, classifier, **kwargs)  # type: ignore[arg-type]


__all__ = ["AreaError", "SceneResult", "classify_file", "classify_scene", "window_starts"]
