"""Write the synthetic landscape the way Sentinel-2 L2A arrives: a STAC catalogue of dates.

Per period (the reference year and the monitoring year of the config's dates),
``config.acquisitions`` acquisitions, each with its own clouds and shadows, a scene
classification layer (SCL), per-band COGs at native resolution (B02, B03, B04, B08 at
10 m; B05, B06, B07, B8A, B11, B12 and SCL at 20 m) and processing-baseline metadata:
reference-year items at baseline 02.09, monitoring-year items at 05.10 with the BOA
offset (+1000 DN in the files, ``raster:bands`` offset -0.1), as ESA ships them.

Layout under the output folder::

    stac/catalog.json                 a self-contained static STAC catalogue
    stac/<item id>/<band>.tif         per-band COGs, SCL.tif
    labels/labels_<date>.tif          truth land cover of each period where at least
                                      one acquisition saw the ground clearly, else 0
    labels/cover_<date>.tif           the true land cover everywhere (under clouds too)
    radar/S1X_IW_GRDH_<date>...tif    Sentinel-1 gamma0 VV, VH every 12 days (20 m,
                                      linear power; :mod:`training.synthetic.radar`)
    plots.geojson                     farm plots with their truth (valid fraction,
                                      forest loss by driver) from those labels
    plots_eudr.geojson                the same plots as a statement declares them
                                      (points with Area up to 4 ha, else polygons)
    region.geojson                    the landscape's footprint (lon/lat)
    truth.json                        config, periods, items, class and transition pixels

The truth's "observed" is the generator's own (no cloud, no shadow, inside the swath);
the SCL is what a processor would say: coarser (20 m), conservative where a 20 m cell
holds any cloud, and blind to the faintest cloud edges (opacity under 0.15).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.windows import Window
from rich.progress import Progress

from serving.areas import M2_PER_HA
from serving.bands import DEFAULT_BANDS as S2_BANDS
from serving.classes import ClassSchema, load_classes
from serving.files import staged
from serving.imagery.safe import item_from_files
from training.synthetic.eudr import write_eudr_plots, write_region
from training.synthetic.landscape import (
    DEGRADED,
    NODATA,
    OTHER,
    Landscape,
    LandscapeConfig,
    Strip,
)
from training.synthetic.radar import write_radar_series
from training.synthetic.reference_layers import write_reference_layers
from training.synthetic.writer import STRIP_ROWS, _write_plots, raster_profile

#: Bands at 10 m; the other bands (and SCL) are written at 20 m.
BANDS_10M = ("B02", "B03", "B04", "B08")
#: Processing baselines of the reference and the monitoring period's items.
BASELINES = ("02.09", "05.10")
#: BOA offset (DN) of each period's items: none before baseline 04.00, -1000 after.
BOA_OFFSETS = (0.0, -1000.0)
#: SCL codes in order of precedence when four 10 m pixels make one 20 m cell.
_SCL_PRECEDENCE = (4, 5, 6, 3, 8, 9, 0)


def period_of(date: str) -> str:
    """The calendar year of a ``YYYYMMDD`` date as a ``START/END`` period."""
    return f"{date[:4]}-01-01/{date[:4]}-12-31"


def acquisition_dates(date: str, count: int) -> list[dt.datetime]:
    """``count`` acquisition times spread over the year of ``date`` (15:10 UTC)."""
    year = int(date[:4])
    return [dt.datetime(year, 1 + (12 * k) // count, 15, 15, 10, tzinfo=dt.UTC)
            for k in range(count)]


def scl_of(strip: Strip) -> NDArray[np.uint8]:
    """The scene classification a processor would give each 10 m pixel."""
    scl = np.full(strip.cover.shape, 4, np.uint8)  # vegetation
    bare = (strip.cover == DEGRADED) & (strip.image[3] < strip.image[2] * 1.6)
    scl[(strip.cover == OTHER) | bare] = 5  # not vegetated
    scl[strip.water] = 6
    scl[strip.shadow] = 3
    scl[strip.cloud >= 0.15] = 8
    scl[strip.cloud >= 0.5] = 9
    scl[strip.outside] = 0
    return scl


def to_20m_scl(scl: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """2x2 cells of SCL: the code of highest precedence (any cloud makes the cell cloud)."""
    rank = np.zeros(256, np.uint8)
    for i, code in enumerate(_SCL_PRECEDENCE):
        rank[code] = i
    h, w = scl.shape
    ranks = rank[scl].reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))
    return np.asarray(_SCL_PRECEDENCE, np.uint8)[ranks]


def to_20m_band(band: NDArray[np.uint16]) -> NDArray[np.uint16]:
    """2x2 mean of a 10 m band; 0 (no data) where any of the four is 0."""
    h, w = band.shape
    cells = band.reshape(h // 2, 2, w // 2, 2).astype(np.float32)
    mean = np.rint(cells.mean(axis=(1, 3))).astype(np.uint16)
    mean[(cells == 0).any(axis=(1, 3))] = 0
    return mean


def generate_time_series(
    out_dir: str | Path,
    config: LandscapeConfig | None = None,
    classes: ClassSchema | None = None,
    progress: bool = True,
) -> Path:
    """Write the landscape as a STAC catalogue of acquisitions (replaced atomically).

    Args:
        out_dir: Folder to create; an existing one is replaced only on success.
        config: Landscape parameters (size must be even: 20 m bands halve it).
        classes: Class schema for the label colour tables.
        progress: Show a progress bar.

    Returns:
        The output folder.
    """
    config = config or LandscapeConfig()
    if config.size % 2:
        raise ValueError(f"the time series needs an even size (20 m bands); got "
                         f"{config.size}")
    classes = classes or load_classes()
    out = Path(out_dir)
    with staged(out, directory=True) as tmp:
        _write_series(tmp, config, classes, progress)
        if out.exists():
            shutil.rmtree(out)
    return out


def _write_series(out: Path, config: LandscapeConfig, classes: ClassSchema,
                  progress: bool) -> None:
    import pystac

    land = Landscape(config)
    size = config.size
    (out / "labels").mkdir()
    stac = out / "stac"
    n_cls = classes.num_classes
    strips = list(range(0, size, STRIP_ROWS))
    catalog = pystac.Catalog(
        id="cacaomap-synthetic",
        description="Synthetic Sentinel-2 L2A acquisitions near Tocache (cacaomap imagery synth)")
    items_truth: list[dict[str, Any]] = []
    counts = np.zeros((2, n_cls), np.int64)
    covers: dict[int, NDArray[np.uint8]] = {}
    seen: dict[int, NDArray[np.int32]] = {}
    with Progress(disable=not progress, transient=True) as bar, \
            tempfile.TemporaryDirectory(prefix=".scratch-", dir=out) as scratch:
        total = 2 * config.acquisitions * len(strips)
        task = bar.add_task("synthetic acquisitions", total=total)
        for period, date in enumerate(config.dates):
            seen[period] = np.zeros((size, size), np.int32)
            covers[period] = np.zeros((size, size), np.uint8)
            for k, when in enumerate(acquisition_dates(date, config.acquisitions)):
                baseline = BASELINES[period].replace(".", "")
                item_id = f"S2X_MSIL2A_{when:%Y%m%dT%H%M%S}_N{baseline}_synthetic"
                files, clear = _write_acquisition(land, period, k, Path(scratch) / item_id,
                                                  seen[period], covers[period], bar, task)
                item = item_from_files(
                    item_id, when, files,
                    properties={"platform": "sentinel-2x",
                                "s2:processing_baseline": BASELINES[period],
                                "cacaomap:synthetic": True},
                    offsets={b: BOA_OFFSETS[period] for b in S2_BANDS})
                catalog.add_item(item)
                items_truth.append({"id": item_id, "period": period_of(date),
                                    "processing_baseline": BASELINES[period],
                                    "clear_fraction": clear})
            labels = np.where(seen[period] > 0, covers[period], NODATA).astype(np.uint8)
            counts[period] = np.bincount(labels.ravel(), minlength=n_cls)[:n_cls]
            with rasterio.open(out / "labels" / f"labels_{date}.tif", "w",
                               **raster_profile(config, 1, "uint8")) as lab:
                lab.write(labels, 1)
                lab.write_colormap(1, classes.colormap())
                lab.update_tags(DATE=date, PERIOD=period_of(date))
        # Items move from the scratch folder into the catalogue's layout.
        catalog.normalize_hrefs(str(stac))
        for item in catalog.get_items():
            folder = Path(str(item.get_self_href())).parent
            folder.mkdir(parents=True, exist_ok=True)
            for asset in item.assets.values():
                target = folder / Path(asset.href).name
                shutil.move(asset.href, target)
                asset.href = str(target)
        catalog.make_all_asset_hrefs_relative()
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    profile = raster_profile(config, 1, "uint8")
    for period, date in enumerate(config.dates):  # the land cover, clouds or not
        with rasterio.open(out / "labels" / f"cover_{date}.tif", "w", **profile) as dst:
            dst.write(covers[period], 1)
            dst.write_colormap(1, classes.colormap())
            dst.update_tags(DATE=date, PERIOD=period_of(date),
                            NOTE="true land cover, observed or not (truth under clouds)")
    radar_files = write_radar_series(
        out / "radar", covers, [int(d[:4]) for d in config.dates], config.crs,
        profile["transform"], config.seed) if config.radar else []
    _write_plots(out, land, config)
    write_eudr_plots(out / "plots.geojson", out / "plots_eudr.geojson")
    left, top = config.origin
    side = config.size * config.pixel_size
    write_region(config.crs, (left, top - side, left + side, top), out / "region.geojson")
    ref = np.where(seen[0] > 0, covers[0], NODATA)
    cur = np.where(seen[1] > 0, covers[1], NODATA)
    transitions = np.zeros((n_cls, n_cls), np.int64)
    np.add.at(transitions, (ref.ravel(), cur.ravel()), 1)
    truth = {
        "config": asdict(config),
        "bands": list(S2_BANDS),
        "classes": classes.to_dict(),
        "pixel_area_ha": config.pixel_size**2 / M2_PER_HA,
        "periods": {d: period_of(d) for d in config.dates},
        "items": items_truth,
        "never_clear_fraction": {d: float(np.mean(seen[i] == 0))
                                 for i, d in enumerate(config.dates)},
        "class_pixels": {d: counts[i].tolist() for i, d in enumerate(config.dates)},
        "transition_pixels": transitions.tolist(),
        "note": "transition_pixels[ref][current]; code 0: never seen clearly in a period",
        "radar_acquisitions": [p.name for p in radar_files],
        "reference_layers": write_reference_layers(
            out / "reference_layers", covers[0], covers[1], config.crs,
            raster_profile(config, 1, "uint8")["transform"], config.seed),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2))


def _write_acquisition(land: Landscape, period: int, k: int, folder: Path,
                       seen: NDArray[np.int32], cover: NDArray[np.uint8],
                       bar: Progress, task: Any) -> tuple[dict[str, Path], float]:
    """Render one acquisition into per-band files; count clear pixels into ``seen``.

    Returns:
        The band files (name → COG path) and the acquisition's truly clear fraction.
    """
    config = land.config
    size, half = config.size, config.size // 2
    folder.mkdir(parents=True)
    offset = -BOA_OFFSETS[period]
    paths = {b: folder / f"{b}.tif" for b in (*S2_BANDS, "SCL")}
    handles = {}
    clear_px = 0
    try:
        for band, path in paths.items():
            profile = raster_profile(config, 1, "uint8" if band == "SCL" else "uint16",
                                     coarsen=1 if band in BANDS_10M else 2)
            handles[band] = rasterio.open(path, "w", **profile)
        for r0 in range(0, size, STRIP_ROWS):
            r1 = min(r0 + STRIP_ROWS, size)
            strip = land.render_acquisition(r0, r1, period, k)
            clear = (strip.cloud == 0) & ~strip.shadow & ~strip.outside
            seen[r0:r1] += clear
            clear_px += int(clear.sum())
            cover[r0:r1] = strip.cover
            image = strip.image.astype(np.uint32)
            image = np.where(image > 0, np.minimum(image + offset, 65535), 0).astype(
                np.uint16)
            for b, band in enumerate(S2_BANDS):
                if band in BANDS_10M:
                    handles[band].write(image[b], 1, window=Window(0, r0, size, r1 - r0))
                else:
                    handles[band].write(to_20m_band(image[b]), 1,
                                        window=Window(0, r0 // 2, half, (r1 - r0) // 2))
            handles["SCL"].write(to_20m_scl(scl_of(strip)), 1,
                                 window=Window(0, r0 // 2, half, (r1 - r0) // 2))
            bar.advance(task)
    finally:
        for handle in handles.values():
            handle.close()
    cogs = {}
    for band, path in paths.items():
        cog = path.with_suffix(".cog.tif")
        rasterio.shutil.copy(path, cog, driver="COG", compress="DEFLATE",
                             predictor=2 if band != "SCL" else 1,
                             resampling="NEAREST" if band == "SCL" else "AVERAGE")
        path.unlink()
        final = cog.with_name(path.name)
        cog.rename(final)
        cogs[band] = final
    return cogs, clear_px / size**2
