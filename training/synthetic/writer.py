"""Write the synthetic landscape to disk: GeoTIFFs, label polygons, plots and truth.

Layout under the output folder (the default training config reads it as is)::

    images/s2l2a_<date>.tif     10-band uint16 L2A reflectance x 10000, nodata 0
    labels/labels_<date>.tif    uint8 class codes, 0 = nodata (cloud, shadow, swath edge)
    polygons/labels_<date>.gpkg the same labels as polygons, field ``class``
    plots.geojson               farm plots with their true forest loss by driver
    truth.json                  class areas per date, transition matrix, the config
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
from rasterio.transform import Affine, from_origin
from rich.progress import Progress

from serving.areas import M2_PER_HA
from serving.classes import ClassSchema, load_classes
from serving.files import staged
from training.synthetic.landscape import FOREST, NODATA, Landscape, LandscapeConfig
from training.synthetic.spectra import S2_BANDS

#: Rows rendered at a time; bounds memory at about 60 MB per 1000 px of width.
STRIP_ROWS = 256


def raster_profile(config: LandscapeConfig, count: int, dtype: str, coarsen: int = 1
                   ) -> dict[str, Any]:
    """The GeoTIFF profile of the landscape's grid, tiled and compressed.

    ``coarsen``: pixels ``coarsen`` times larger (2 for the 20 m bands of a 10 m grid).
    """
    side, pixel = config.size // coarsen, config.pixel_size * coarsen
    return {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": count,
        "dtype": dtype,
        "crs": config.crs,
        "transform": from_origin(*config.origin, pixel, pixel),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel" if count > 1 else "band",
    }


def generate_landscape(
    out_dir: str | Path,
    config: LandscapeConfig | None = None,
    polygons: bool = True,
    classes: ClassSchema | None = None,
    progress: bool = True,
) -> Path:
    """Generate the two-date landscape into ``out_dir`` (replaced atomically).

    Args:
        out_dir: Folder to create; an existing one is replaced only on success.
        config: Landscape parameters (defaults: 512 px, seed 0).
        polygons: Also write the labels as polygons (GeoPackage).
        classes: Class schema for the colour tables (default schema if None).
        progress: Show a progress bar.

    Returns:
        The output folder.
    """
    config = config or LandscapeConfig()
    classes = classes or load_classes()
    out = Path(out_dir)
    with staged(out, directory=True) as tmp:
        _write_all(tmp, config, polygons, classes, progress)
        if out.exists():  # the previous landscape goes only once the new one is whole
            shutil.rmtree(out)
    return out


def _write_all(
    out: Path,
    config: LandscapeConfig,
    polygons: bool,
    classes: ClassSchema,
    progress: bool,
) -> None:
    land = Landscape(config)
    for sub in ("images", "labels", "polygons"):
        (out / sub).mkdir()
    n_cls = classes.num_classes
    counts = np.zeros((2, n_cls), np.int64)
    transitions = np.zeros((n_cls, n_cls), np.int64)
    strips = range(0, config.size, STRIP_ROWS)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("synthetic landscape", total=2 * len(strips))
        ref_labels: dict[int, np.ndarray] = {}
        for date_idx, date in enumerate(config.dates):
            img_path = out / "images" / f"s2l2a_{date}.tif"
            lab_path = out / "labels" / f"labels_{date}.tif"
            shapes: list[tuple[dict[str, Any], float]] = []
            with (
                rasterio.open(img_path, "w", **raster_profile(config, len(S2_BANDS), "uint16"))
                as img,
                rasterio.open(lab_path, "w", **raster_profile(config, 1, "uint8")) as lab,
            ):
                img.descriptions = S2_BANDS
                img.update_tags(DATE=date, SCALE="0.0001", SENSOR="synthetic S2 L2A")
                lab.write_colormap(1, classes.colormap())
                for r0 in strips:
                    r1 = min(r0 + STRIP_ROWS, config.size)
                    window = rasterio.windows.Window(0, r0, config.size, r1 - r0)
                    image, labels = land.render(r0, r1, date_idx)
                    img.write(image, window=window)
                    lab.write(labels, 1, window=window)
                    counts[date_idx] += np.bincount(labels.ravel(), minlength=n_cls)
                    if date_idx == 0:
                        ref_labels[r0] = labels
                    else:
                        ref = ref_labels.pop(r0)
                        np.add.at(transitions, (ref.ravel(), labels.ravel()), 1)
                    if polygons:
                        shapes.extend(
                            _polygonise(labels, lab.window_transform(window))
                        )
                    bar.advance(task)
            if polygons:
                _write_polygons(out / "polygons" / f"labels_{date}.gpkg", shapes, config)
    _write_plots(out, land, config)
    ha = config.pixel_size**2 / M2_PER_HA
    truth = {
        "config": asdict(config),
        "bands": list(S2_BANDS),
        "classes": classes.to_dict(),
        "pixel_area_ha": ha,
        "class_pixels": {d: counts[i].tolist() for i, d in enumerate(config.dates)},
        "transition_pixels": transitions.tolist(),
        "note": "transition_pixels[ref][current]; code 0 is nodata at either date",
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2))


def _polygonise(
    labels: np.ndarray, transform: Affine
) -> list[tuple[dict[str, Any], float]]:
    mask = labels != NODATA
    return list(rasterio.features.shapes(labels, mask=mask, transform=transform))


def _write_polygons(
    path: Path, shapes: list[tuple[dict[str, Any], float]], config: LandscapeConfig
) -> None:
    import geopandas as gpd
    from shapely.geometry import shape

    frame = gpd.GeoDataFrame(
        {"class": [int(v) for _, v in shapes]},
        geometry=[shape(g) for g, _ in shapes],
        crs=config.crs,
    )
    frame.to_file(path, driver="GPKG", layer="labels")


def _write_plots(out: Path, land: Landscape, config: LandscapeConfig) -> None:
    """Farm plots with their truth from the written label rasters, to the pixel."""
    import geopandas as gpd
    from shapely.geometry import box

    ref_path, cur_path = (out / "labels" / f"labels_{d}.tif" for d in config.dates)
    ha = config.pixel_size**2 / M2_PER_HA
    records = []
    geoms = []
    with rasterio.open(ref_path) as ref_src, rasterio.open(cur_path) as cur_src:
        for plot in land.plots:
            window = rasterio.windows.Window(plot.col, plot.row, plot.width, plot.height)
            ref = ref_src.read(1, window=window)
            cur = cur_src.read(1, window=window)
            valid = (ref != NODATA) & (cur != NODATA)
            forest_ref = valid & (ref == FOREST)
            record: dict[str, Any] = {
                "plot_id": plot.plot_id,
                "purpose": plot.purpose,
                "pixels": int(ref.size),
                "valid_fraction": float(valid.mean()),
                "forest_ref_px": int(forest_ref.sum()),
                "stable_forest_px": int((forest_ref & (cur == FOREST)).sum()),
            }
            for code, name in ((2, "cocoa_agroforestry"), (3, "oil_palm"),
                               (4, "degraded"), (5, "other")):
                record[f"loss_to_{name}_px"] = int((forest_ref & (cur == code)).sum())
            record["forest_loss_ha"] = ha * (
                record["forest_ref_px"] - record["stable_forest_px"]
            )
            records.append(record)
            left, top = ref_src.xy(plot.row, plot.col, offset="ul")
            geoms.append(
                box(left, top - plot.height * config.pixel_size,
                    left + plot.width * config.pixel_size, top)
            )
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs=config.crs)
    frame.to_file(out / "plots.geojson", driver="GeoJSON")
