"""The baseline store on disk, and reading any window of it.

A store is a folder::

    store.json                       periods, model, thresholds, grid, cells, landscape
    catalog.json, reference/, current/   a static STAC catalogue of the cells
    cells/<cell>/<period>/<key>/composite.tif  the period's composite (bands + clear_count)
    cells/<cell>/<period>/<key>/classes.tif    its class map (COG, uint8, 0 = nodata)
    cells/<cell>/<period>/<key>/confidence.tif its per-pixel confidence (percent)
    cells/<cell>/<period>/<key>/done.json      the content key and lineage of the above

A cell's files for a period lie in a folder named by their content key (imagery,
model, options) and are never rewritten: a rebuild writes new folders, then replaces
``store.json``, which names the folder of each cell and period (``versions``), in one
atomic rename. Whoever read one ``store.json`` reads one consistent version, however
the store is rebuilt meanwhile (a service re-reads ``store.json`` when it changes).
Stores of the first layout (files right under ``<period>/``) are read as they are.

:class:`MapSource` is what plot checks read: one or more :class:`ZoneMaps` (a zone's
lattice and the cells on it). :meth:`ZoneMaps.read` assembles any window of the lattice
from the cells it touches and says which pixels lie inside a built cell; nothing
outside the window is read. A :meth:`ZoneMaps.reader` keeps the files it opened open
for a run of reads (one per thread); nothing stays open after it. A pair of class maps
given as files is a source too (:func:`pair_of_maps`): one "zone" on the reference
map's own grid, the current map warped onto it if its grid differs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling
from rasterio.windows import Window
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from serving.classes import ClassSchema
from serving.inference.confidence import CONFIDENCE_NODATA, confidence_path
from serving.store.grid import Cell, Zone, lattice

log = logging.getLogger(__name__)

STORE_FILE = "store.json"
STORE_VERSION = 1
PERIODS = ("reference", "current")
Period = Literal["reference", "current"]
Layer = Literal["classes", "confidence", "composite"]
#: Fill value of each layer outside the cells.
FILL = {"classes": 0, "confidence": CONFIDENCE_NODATA, "composite": 0}


class StoreError(ValueError):
    """A store that cannot be read (missing, unfinished, or of another version)."""


#: Characters of the content key that name a cell's folder of one version.
KEY_CHARS = 16


def cell_dir(store: Path, cell_id: str, period: str, key: str | None = None) -> Path:
    """Folder of one cell's files for one period (of one content key, if given)."""
    folder = store / "cells" / cell_id / period
    return folder / key[:KEY_CHARS] if key else folder


@dataclass
class CellMaps:
    """One cell's files for both periods, placed on its zone's lattice."""

    id: str
    row_off: int
    col_off: int
    height: int
    width: int
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    failed: str | None = None

    def window_in(self, window: Window) -> tuple[Window, Window] | None:
        """(cell window, destination window) of the part of ``window`` in this cell."""
        r0 = max(window.row_off, self.row_off)
        c0 = max(window.col_off, self.col_off)
        r1 = min(window.row_off + window.height, self.row_off + self.height)
        c1 = min(window.col_off + window.width, self.col_off + self.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return (Window(c0 - self.col_off, r0 - self.row_off, c1 - c0, r1 - r0),
                Window(c0 - window.col_off, r0 - window.row_off, c1 - c0, r1 - r0))


@dataclass
class ZoneMaps:
    """A zone's pixel lattice and its cells.

    Attributes:
        crs: CRS of the lattice.
        transform: Transform of lattice pixel (0, 0).
        cells: The cells on it.
        band: The lon/lat part of the world this zone answers for (None: all).
        name: What messages call it.
    """

    crs: str
    transform: Affine
    cells: list[CellMaps]
    band: BaseGeometry | None = None
    name: str = ""

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units."""
        return float(self.transform.a)

    def window_transform(self, window: Window) -> Affine:
        """Transform of a window of the lattice."""
        return self.transform * Affine.translation(window.col_off, window.row_off)

    def pixel_window(self, bounds: tuple[float, float, float, float], margin: int = 0
                     ) -> Window:
        """The lattice window (whole pixels) covering CRS ``bounds``, grown by ``margin``."""
        inverse = ~self.transform
        c0, r0 = inverse * (bounds[0], bounds[3])
        c1, r1 = inverse * (bounds[2], bounds[1])
        c0, r0 = int(np.floor(c0)) - margin, int(np.floor(r0)) - margin
        c1, r1 = int(np.ceil(c1)) + margin, int(np.ceil(r1)) + margin
        return Window(c0, r0, max(1, c1 - c0), max(1, r1 - r0))

    def read(self, layer: Layer, period: str, window: Window,
             bands: list[int] | None = None) -> tuple[NDArray[Any], NDArray[np.bool_]]:
        """A window of one layer of one period (files opened and closed for it).

        See :meth:`ZoneReader.read`; a :meth:`reader` keeps files open across reads.
        """
        with self.reader() as reader:
            return reader.read(layer, period, window, bands)

    @contextmanager
    def reader(self) -> Iterator[ZoneReader]:
        """A reader that keeps the files it opens until the block ends (one thread)."""
        reader = ZoneReader(self)
        try:
            yield reader
        finally:
            reader.close()

    def has(self, layer: Layer) -> bool:
        """Whether every built cell has this layer for both periods."""
        built = [c for c in self.cells if not c.failed]
        return bool(built) and all((layer, p) in c.files for c in built for p in PERIODS)

    def opener(self, path: Path) -> Any:
        """Open one file (a pair of maps warps the current map here)."""
        return rasterio.open(path)


class ZoneReader:
    """Reads windows of a zone, keeping each file it opened open until closed."""

    def __init__(self, zone: ZoneMaps) -> None:
        self.zone = zone
        self._handles: dict[Path, Any] = {}

    def read(self, layer: Layer, period: str, window: Window,
             bands: list[int] | None = None) -> tuple[NDArray[Any], NDArray[np.bool_]]:
        """A window of one layer of one period, assembled from the cells it touches.

        Returns:
            (data, inside): data is (H, W) (or (bands, H, W) with ``bands``), the
            layer's fill where no built cell is; ``inside`` marks pixels of built cells.
        """
        h, w = int(window.height), int(window.width)
        shape_ = (h, w) if bands is None else (len(bands), h, w)
        data: NDArray[Any] | None = None
        inside = np.zeros((h, w), bool)
        for cell in self.zone.cells:
            placed = cell.window_in(window)
            if placed is None or cell.failed:
                continue
            path = cell.files.get((layer, period))
            if path is None:
                continue
            src_win, dst_win = placed
            src = self._open(path)
            part = src.read(bands if bands is not None else 1, window=src_win)
            if data is None:
                data = np.full(shape_, FILL[layer], part.dtype)
            rows = slice(int(dst_win.row_off), int(dst_win.row_off + dst_win.height))
            cols = slice(int(dst_win.col_off), int(dst_win.col_off + dst_win.width))
            data[..., rows, cols] = part
            inside[rows, cols] = True
        if data is None:
            data = np.full(shape_, FILL[layer], np.uint8 if layer != "composite" else
                           np.uint16)
        return data, inside

    def _open(self, path: Path) -> Any:
        if path not in self._handles:
            self._handles[path] = self.zone.opener(path)
        return self._handles[path]

    def close(self) -> None:
        """Close the files this reader opened."""
        for src in self._handles.values():
            src.close()
        self._handles.clear()


@dataclass
class MapSource:
    """What plot checks read from: zones of class maps for two periods.

    Attributes:
        zones: The zones.
        schema: The class schema of the maps.
        lineage: What the maps are (store, model, periods, files).
        root: The store's folder (None for a pair of maps).
        meta: ``store.json`` (a store only).
    """

    zones: list[ZoneMaps]
    schema: ClassSchema
    lineage: dict[str, Any]
    root: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def open_store(root: str | Path) -> MapSource:
    """A built store as a :class:`MapSource`.

    Raises:
        StoreError: No ``store.json`` (not a store, or its build never finished).
    """
    root = Path(root)
    meta_path = root / STORE_FILE
    if not meta_path.is_file():
        hint = (" (its build has not finished: run `cacaomap store build` again)"
                if (root / "cells").is_dir() else "")
        raise StoreError(f"{root} is not a baseline store: no {STORE_FILE}{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{meta_path} is not JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("cacaomap_store") != STORE_VERSION:
        found = meta.get("cacaomap_store") if isinstance(meta, dict) else None
        raise StoreError(f"{meta_path}: store version {found!r}, this reader reads "
                         f"{STORE_VERSION}")
    return source_from_meta(root, meta)


def store_version(meta: dict[str, Any]) -> str:
    """The version of a store: the sha256 (16 hex) of its description, cells included."""
    import hashlib

    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()
                          ).hexdigest()[:KEY_CHARS]


def source_from_meta(root: Path, meta: dict[str, Any]) -> MapSource:
    """The store at ``root`` described by ``meta`` (``store.json``) as a source."""
    by_zone: dict[tuple[int, bool], list[CellMaps]] = {}
    for record in meta["cells"]:
        cell = Cell.from_dict(record)
        failed = record.get("failed")
        maps = CellMaps(cell.id, cell.row_off, cell.col_off, cell.size, cell.size,
                        failed="; ".join(f"{k}: {v}" for k, v in failed.items())
                        if isinstance(failed, dict) and failed else None)
        versions = record.get("versions") or {}
        for period in PERIODS:
            folder = cell_dir(root, cell.id, period, versions.get(period))
            for layer in ("classes", "confidence", "composite"):
                path = folder / f"{layer}.tif"
                if path.is_file():
                    maps.files[(layer, period)] = path
        by_zone.setdefault((cell.zone, cell.south), []).append(maps)
    resolution = float(meta["grid"]["resolution"])
    zones = [ZoneMaps(Zone(n, s).crs, lattice(resolution), cells,
                      Zone(n, s).band_polygon(), Zone(n, s).name)
             for (n, s), cells in sorted(by_zone.items())]
    lineage = {"store": {"path": str(root), "created": meta.get("created"),
                         "version": store_version(meta),
                         "periods": meta.get("periods"), "cutoff": meta.get("cutoff"),
                         "model": meta.get("model"),
                         "cells": len(meta["cells"])}}
    return MapSource(zones, ClassSchema.from_dict(meta["classes"]), lineage, root, meta)


class _PairZone(ZoneMaps):
    """A pair of class maps as one zone: the current map warped onto the reference."""

    def opener(self, path: Path) -> Any:
        src = rasterio.open(path)
        if (src.crs, src.transform, src.width, src.height) == (
                self.crs, self.transform, self.cells[0].width, self.cells[0].height):
            return src
        return _OwnedVRT(src, WarpedVRT(src, crs=self.crs, transform=self.transform,
                                        width=self.cells[0].width,
                                        height=self.cells[0].height,
                                        resampling=Resampling.nearest))


class _OwnedVRT:
    """A warped view that closes its source with it."""

    def __init__(self, src: Any, vrt: Any) -> None:
        self._src, self._vrt = src, vrt

    def read(self, *args: Any, **kwargs: Any) -> Any:
        return self._vrt.read(*args, **kwargs)

    def close(self) -> None:
        self._vrt.close()
        self._src.close()


def pair_of_maps(reference: str | Path, current: str | Path, schema: ClassSchema,
                 with_confidence: bool = True) -> MapSource:
    """Two class maps on disk as a :class:`MapSource` (their confidence COGs if beside).

    Raises:
        StoreError: A map without a CRS.
    """
    reference, current = Path(reference), Path(current)
    with rasterio.open(reference) as src:
        if src.crs is None:
            raise StoreError(f"{reference.name} has no CRS: no ground areas")
        crs, transform, width, height = src.crs.to_string(), src.transform, src.width, src.height
    with rasterio.open(current) as src:
        if src.crs is None:
            raise StoreError(f"{current.name} has no CRS: no ground areas")
    cell = CellMaps("maps", 0, 0, height, width, {
        ("classes", "reference"): reference, ("classes", "current"): current})
    for period, path in (("reference", reference), ("current", current)):
        conf = confidence_path(path)
        if with_confidence and conf.is_file():
            cell.files[("confidence", period)] = conf
    zone = _PairZone(crs, transform, [cell], None, crs)
    lineage = {"maps": {"reference": reference.name, "current": current.name}}
    return MapSource([zone], schema, lineage)


def region_of(meta: dict[str, Any]) -> BaseGeometry:
    """The store's region as a lon/lat geometry."""
    return shape(meta["region"])


class StoreVersions:
    """The store the service answers from: the version ``store.json`` names now.

    A rebuild replaces ``store.json`` in one atomic rename once its new files are
    written (:mod:`serving.store.reader`); each request takes the version it starts
    with (a ``stat`` tells whether it changed), so every answer comes from one
    consistent version and names it in its lineage. No restart is needed.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.stamp: tuple[int, int] | None = None
        self.source: MapSource | None = None
        self.current()

    def current(self) -> MapSource | None:
        """The store, or None without one."""
        if self.root is None:
            return None
        try:
            info = (self.root / STORE_FILE).stat()
        except OSError:
            return self.source
        stamp = (info.st_mtime_ns, info.st_ino)
        with self.lock:
            if stamp != self.stamp:
                try:
                    self.source, self.stamp = open_store(self.root), stamp
                    log.info("store %s: version %s", self.root,
                             self.source.lineage["store"]["version"])
                except StoreError as err:  # keep answering from the version in hand
                    if self.source is None:
                        raise
                    log.warning("store %s changed but cannot be read (%s); still "
                                "answering from the version in hand", self.root, err)
            return self.source
