"""Whole-scene classification: sliding windows, blended seams, a COG class map.

Windows of the contract's tile size overlap by ``overlap`` pixels and are blended by
:mod:`serving.inference.blending`: seams are blended, not cut, and the pixels a window sees with
too little context (zero padding at its inner edges) never count. For a model whose
receptive-field radius r is at most ``overlap // 4`` the stitched map therefore equals the
map of the scene classified whole, away from a margin of r pixels at the scene's own
edges (where a whole-scene run pads the input to a multiple of 32).

The scene is classified in column groups (``block_px``, default 4096 px), each in
strips of window rows read in a background thread while the previous strip is
classified. Memory holds one strip of one group (classes x tile x group width floats)
plus what a group carries to its neighbour (classes x height x overlap), not the scene;
GDAL's block cache is capped for the same reason.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from numpy.typing import NDArray
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window
from rich.progress import Progress

from serving.areas import (
    AreaError,
    class_hectares,
    pixel_areas,
)
from serving.files import staged
from serving.inference.blending import (
    Carry,
    Emitted,
    GroupBlender,
    column_groups,
    window_starts,
)
from serving.inference.confidence import (
    CONFIDENCE_BAND,
    CONFIDENCE_NODATA,
    encode_confidence,
)
from serving.inference.scene_checks import check_class_map, check_mask, check_scene, scene_bands
from serving.inference.tiles import InputError, TileClassifier
from serving.settings import DEFAULT_MAX_PIXELS

#: Widest column group classified at a time, in pixels: memory is bounded by this.
DEFAULT_BLOCK_PX = 4096
#: GDAL's block cache while a scene is classified (its default, 5% of RAM, would let
#: memory grow with the scene up to ~1.2 GB on 24 GB).
GDAL_CACHE_BYTES = 256 * 2**20


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


def is_class_map(src: DatasetReader) -> bool:
    """Whether an open raster is a class map (one uint8 band) rather than a scene."""
    return src.count == 1 and src.dtypes[0] == "uint8"


def class_map_or_scene(src: DatasetReader, classifier: TileClassifier, name: str
                       ) -> Literal["class map", "scene"]:
    """What an upload for one date is: a class map as it is, or a scene to classify.

    Raises:
        InputError: It is neither (naming its bands and dtype).
    """
    if is_class_map(src):
        return "class map"
    if scene_bands(src, classifier.contract.bands) is not None:
        return "scene"
    raise InputError(f"the {name} upload must be a one-band uint8 class map or a scene of "
                     f"{classifier.contract.num_bands} bands; got {src.count} band(s) of "
                     f"{src.dtypes[0]}")


def class_map_of(src: DatasetReader, source: Path, target: Path,
                 classifier: TileClassifier | None, name: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS, mask: DatasetReader | None = None,
                 ) -> Literal["class map", "scene"]:
    """Put the class map of one date at ``target``: copied if it is one, else classified.

    The one place that decides "class map or scene" for the service's ``/baseline``,
    the map page and the CLI's baseline.

    Args:
        src: ``source`` opened (an upload is opened from memory, GTiff driver only).
        source: The file's bytes on disk (copied as they are for a class map).
        target: Where the class map goes.
        classifier: The model that classifies a scene (None: scenes are refused).
        name: What the date is called in messages (``reference``, ``current``).
        max_pixels: Largest scene accepted.
        mask: A clear-sky mask on the scene's grid (scenes only).

    Returns:
        What ``source`` was.

    Raises:
        InputError: It is neither, or a scene came without a model.
    """
    if is_class_map(src):
        if mask is not None:
            raise InputError(f"the {name} upload is a class map: a mask goes with a scene")
        check_class_map(src, name, max_pixels)
        shutil.copyfile(source, target)
        return "class map"
    if classifier is None:
        raise InputError(f"the {name} date ({source.name}) is a scene, not a class map: "
                         "give a model to classify it")
    kind = class_map_or_scene(src, classifier, name)
    classify_scene(src, target, classifier, max_pixels=max_pixels, mask=mask)
    return kind


@dataclass(frozen=True)
class CloudModel:
    """The cloud/shadow model run on the scene itself (no SCL, no mask file)."""

    bands: list[str]
    reflectance_scale: float


def _read_masked(src: DatasetReader, bands: list[int], window: Window,
                 mask: DatasetReader | None, fill: float,
                 cloud_model: CloudModel | None = None) -> np.ndarray:
    data = src.read(bands, window=window)
    if mask is not None:
        unclear = mask.read(1, window=window) == 0
        data[:, unclear] = fill
    if cloud_model is not None:
        from serving.imagery.masks import csmask_clear

        reflectance = data.astype(np.float32) / cloud_model.reflectance_scale
        data[:, ~csmask_clear(reflectance, cloud_model.bands)] = fill
    return data


def _strips(src: DatasetReader, x0: int, width: int, rows: list[int], height: int,
            bands: list[int], mask: DatasetReader | None = None, fill: float = 0,
            cloud_model: CloudModel | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Strips of a column group, each read in a thread while the previous is classified.

    Pixels a clear-sky ``mask`` (or the ``cloud_model``) says are not clear are read as
    no data (``fill``).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="scene-read") as pool:
        pending = pool.submit(_read_masked, src, bands, Window(x0, rows[0], width, height),
                              mask, fill, cloud_model)
        for i, row in enumerate(rows):
            strip = pending.result()
            if i + 1 < len(rows):
                pending = pool.submit(_read_masked, src, bands,
                                      Window(x0, rows[i + 1], width, height), mask, fill,
                                      cloud_model)
            yield row, strip


class _Tally:
    """Pixel counts and ground hectares per class, summed over written blocks."""

    def __init__(self, src: DatasetReader, classes: int) -> None:
        self.crs, self.transform, self.classes = src.crs, src.transform, classes
        self.counts = np.zeros(classes, np.int64)
        self.hectares = np.zeros(classes, np.float64)

    def add(self, codes: NDArray[np.uint8], row: int, col: int) -> None:
        """Count a block of class codes whose top-left pixel is (row, col)."""
        self.counts += np.bincount(codes.ravel(), minlength=self.classes)[: self.classes]
        if self.crs is not None:
            transform = self.transform * Affine.translation(col, 0)
            areas = pixel_areas(self.crs, transform, codes.shape[0], codes.shape[1], row)
            self.hectares += class_hectares(codes, areas, self.classes)


def _write(block: Emitted | None, out: DatasetWriter, tally: _Tally, nodata: int,
           confidence: DatasetWriter | None = None) -> None:
    if block is None:
        return
    classes = block.probs.argmax(0).astype(np.uint8)
    classes[~block.valid] = nodata
    window = Window(block.col, block.row, classes.shape[1], classes.shape[0])
    out.write(classes, 1, window=window)
    if confidence is not None:
        confidence.write(encode_confidence(block.probs, classes != nodata), 1,
                         window=window)
    tally.add(classes, block.row, block.col)


def _blend_groups(src: DatasetReader, out: DatasetWriter, classifier: TileClassifier,
                  tally: _Tally, overlap: int, batch_size: int, block_px: int,
                  progress: bool, mask: DatasetReader | None = None,
                  cloud_model: CloudModel | None = None,
                  confidence: DatasetWriter | None = None) -> None:
    """Classify every window, blend, and write the class codes to ``out``.

    With ``confidence``, the top blended probability of each pixel goes there too
    (:func:`serving.inference.confidence.encode_confidence`).
    """
    tile = classifier.contract.tile_size
    nodata = classifier.contract.schema.nodata
    height, width = src.height, src.width
    th, tw = min(tile, height), min(tile, width)
    row_starts = window_starts(height, tile, tile - overlap)
    groups = column_groups(window_starts(width, tile, tile - overlap), tw, block_px)
    carry: Carry | None = None
    bands = scene_bands(src, classifier.contract.bands) or []
    image_nodata = classifier.contract.image_nodata
    fill = image_nodata if image_nodata is not None else float("nan")
    if mask is not None and image_nodata is None and "float" not in src.dtypes[0]:
        raise InputError("a mask needs a model with an image nodata value, or float "
                         "imagery (masked pixels are read as NaN)")
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("classifying scene", total=len(row_starts) * len(groups))
        for g, group in enumerate(groups):
            x0 = group[0]
            owned = (groups[g + 1][0] if g + 1 < len(groups) else width) - x0
            blender = GroupBlender(group, tw, th, width, height, overlap,
                                   classifier.contract.schema.num_classes, owned, carry,
                                   last=g + 1 == len(groups))
            for row, strip in _strips(src, x0, blender.width, row_starts, th, bands,
                                      mask, fill, cloud_model):
                _write(blender.emit_until(row), out, tally, nodata, confidence)
                tiles = np.stack([strip[:, :, c - x0 : c - x0 + tw] for c in group])
                blender.observe(classifier.valid_mask(strip[None])[0])
                for b in range(0, len(group), batch_size):
                    probs = classifier.probabilities(tiles[b : b + batch_size])
                    blender.add(row, group[b : b + batch_size], probs)
                bar.advance(task)
            _write(blender.emit_until(height), out, tally, nodata, confidence)
            carry = blender.carry_out


def classify_scene(
    src: DatasetReader,
    dst: str | Path,
    classifier: TileClassifier,
    overlap: int | None = None,
    batch_size: int = 8,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    require_crs: bool = True,
    progress: bool = False,
    block_px: int = DEFAULT_BLOCK_PX,
    mask: DatasetReader | None = None,
    cloud_mask: Literal["none", "csmask"] = "none",
    confidence: str | Path | None = None,
) -> SceneResult:
    """Classify an open scene into a Cloud Optimized GeoTIFF class map at ``dst``.

    With a clear-sky ``mask`` (one band on the scene's grid, non-zero = clear), pixels
    it does not call clear are nodata in the map. A composite's clear count does the
    same by itself (never-seen pixels are 0 in every band). The map's
    ``CACAOMAP_MASK_SOURCE`` tag says which: ``file``, the composite's source (``scl``,
    ``csmask``) or ``none``. ``cloud_mask="csmask"`` runs the ukis-csmask model on the
    scene's own bands (L2A reflectance; no SCL needed) and masks what it calls cloud
    or shadow (``CACAOMAP_MASK_SOURCE=csmask``).

    The scene is classified in column groups of at most ``block_px`` pixels, each from
    top to bottom in strips of window rows; what a group adds to the columns its
    right-hand neighbour starts in is carried over, so the map is the same for any
    ``block_px`` and memory does not grow with the scene's width or height.

    The COG keeps the input's CRS and transform, carries the class colour table and
    marks nodata (code 0) as nodata. It is staged under a temporary name and renamed
    (:func:`serving.files.staged`), so a failed run leaves nothing at ``dst``.

    With ``confidence`` (a path), the per-pixel confidence (the blended top-class
    probability in percent, :mod:`serving.inference.confidence`) is written there as
    a second COG on the same grid, staged the same way.
    """
    check_scene(src, classifier, max_pixels, require_crs)
    if mask is not None:
        check_mask(mask, src)
    contract = classifier.contract
    cloud_model = None
    if cloud_mask == "csmask":
        if not {"B02", "B03", "B04", "B08"} <= set(contract.bands):
            raise InputError(f"the cloud model needs bands B02, B03, B04 and B08; the "
                             f"model reads {', '.join(contract.bands)}")
        cloud_model = CloudModel(list(contract.bands), contract.reflectance_scale)
    schema = contract.schema
    tile = contract.tile_size
    overlap = contract.overlap if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, {tile}); got {overlap}")
    stride = tile - overlap
    height, width = src.height, src.width
    windows = len(window_starts(height, tile, stride)) * len(window_starts(width, tile, stride))
    n_cls = schema.num_classes
    tally = _Tally(src, n_cls)
    dst = Path(dst)
    # Uncompressed: column groups rewrite the blocks they share; the COG compresses.
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1,
        "dtype": "uint8", "crs": src.crs, "transform": src.transform,
        "nodata": schema.nodata, "tiled": True, "blockxsize": 256, "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    # The blocks are written to a scratch file, then copied into the staged COG.
    with staged(dst, suffix=".cog.tif") as cog, tempfile.TemporaryDirectory(
            prefix=f".{dst.name}.", dir=dst.parent) as scratch, rasterio.Env(
            GDAL_CACHEMAX=GDAL_CACHE_BYTES), contextlib.ExitStack() as stack:
        blocks = Path(scratch) / "blocks.tif"
        conf_out = None
        if confidence is not None:
            conf_blocks = Path(scratch) / "confidence.tif"
            conf_out = stack.enter_context(rasterio.open(
                conf_blocks, "w", **(profile | {"nodata": CONFIDENCE_NODATA})))
            conf_out.descriptions = (CONFIDENCE_BAND,)
        with rasterio.open(blocks, "w", **profile) as out:
            out.write_colormap(1, schema.colormap())
            # Lineage travels with the map: the model that made it and the scene's date.
            out.update_tags(
                CACAOMAP_MODEL=contract.name, CACAOMAP_MODEL_VERSION=contract.version,
                CACAOMAP_ONNX_SHA256=contract.onnx_sha256,
                CACAOMAP_MLFLOW_RUN_ID=contract.mlflow_run_id or "",
                **({"DATE": src.tags()["DATE"]} if "DATE" in src.tags() else {}),
                CACAOMAP_MASK_SOURCE=",".join(
                    [m for m, on in (("file", mask is not None),
                                     ("csmask", cloud_model is not None)) if on]
                    or [src.tags().get("CACAOMAP_MASK_SOURCE", "none")]),
                **({"CACAOMAP_COMPOSITE_ITEMS": src.tags()["CACAOMAP_ITEMS"]}
                   if "CACAOMAP_ITEMS" in src.tags() else {}),
            )
            _blend_groups(src, out, classifier, tally, overlap, batch_size, block_px,
                          progress, mask, cloud_model, conf_out)
        if conf_out is not None and confidence is not None:
            conf_out.update_tags(**out.tags())
            conf_out.close()
            with staged(confidence, suffix=".cog.tif") as conf_cog:
                rasterio.shutil.copy(conf_blocks, conf_cog, driver="COG",
                                     compress="DEFLATE", blocksize=512,
                                     overview_resampling="NEAREST")
        rasterio.shutil.copy(blocks, cog, driver="COG", compress="DEFLATE", blocksize=512,
                             overview_resampling="NEAREST")
    names = schema.names
    return SceneResult(
        path=dst,
        class_pixels={names[i]: int(tally.counts[i]) for i in range(n_cls)},
        hectares=({names[i]: float(tally.hectares[i]) for i in range(n_cls)}
                  if src.crs is not None else None),
        width=width, height=height,
        crs=src.crs.to_wkt() if src.crs else None,
        windows=windows,
    )


def classify_file(
    path: str | Path, dst: str | Path, classifier: TileClassifier, **kwargs: object
) -> SceneResult:
    """Classify a GeoTIFF on disk (batch jobs, the offline CLI)."""
    with rasterio.open(path, driver="GTiff") as src:
        return classify_scene(src, dst, classifier, **kwargs)  # type: ignore[arg-type]


__all__ = ["AreaError", "SceneResult", "classify_file", "classify_scene", "window_starts"]
