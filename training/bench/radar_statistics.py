"""Benchmark: does each radar statistic earn its place, and what does the speckle filter do?

1. **Statistics, one family left out at a time.** On the synthetic landscape
   (:func:`training.synthetic.time_series.generate_time_series`: Sentinel-1 every 12
   days, per-class signatures, 4.4-look gamma speckle) the monitoring year's radar is
   stacked onto its optical composite. A random forest on the radar bands alone is
   trained on pixels of the northern half (balanced per class) and scored on every
   pixel of the southern half against the true land cover: all statistics, each family
   (means, standard deviations, percentiles, ratio) left out, and the means alone. A
   family earns its place when leaving it out costs IoU. The same forest on the optical
   bands, and on both, is printed beside it. A random forest, not the network, so that
   every variant is cheap and trained the same way; the network's own ablation
   (optical, radar, both) is in docs/radar.md.
2. **The speckle filter.** The same, with each acquisition Lee-filtered (5 x 5) before
   the statistics: IoU over all pixels and over the pixels within 2 px of a class edge
   (where a spatial filter mixes parcels), and the speckle left in ``VH_mean_db`` over
   the interior of the forest (standard deviation, dB).
3. **Real radar.** The pyroSAR scene (one Sentinel-1 VV, dB, 20 m): equivalent number
   of looks of its most uniform 15 x 15 windows before and after the filter; the
   Rondônia points: radar-only accuracy (5 folds by point) with and without it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray

from serving.classes import load_classes
from serving.radar.acquisitions import describe
from serving.radar.speckle import Speckle, equivalent_looks
from serving.radar.stack import stack_radar
from serving.radar.statistics import RADAR_BANDS, decode_db

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "data" / "radar"
#: Statistic families, by the bands they own.
FAMILIES: dict[str, tuple[str, ...]] = {
    "means": ("VV_mean_db", "VH_mean_db"),
    "standard deviations": ("VV_std_db", "VH_std_db"),
    "percentiles": ("VV_p10_db", "VV_p90_db", "VH_p10_db", "VH_p90_db"),
    "ratio": ("VHVV_ratio_db",),
}
LEE = Speckle("lee", 5)


def _forest(x: NDArray[Any], y: NDArray[Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(100, min_samples_leaf=2, n_jobs=2,
                                  random_state=seed).fit(x, y)


def _iou(truth: NDArray[Any], guess: NDArray[Any], codes: list[int]) -> dict[str, float]:
    names = {c.code: c.name for c in load_classes().classes}
    out = {}
    for code in codes:
        union = int(((truth == code) | (guess == code)).sum())
        out[names[code]] = round(int(((truth == code) & (guess == code)).sum()) / union, 3) \
            if union else float("nan")
    out["macro"] = round(float(np.nanmean(list(out.values()))), 3)
    return out


def _features(stacked: Path, bands: list[str]) -> NDArray[np.float32]:
    with rasterio.open(stacked) as src:
        names = list(src.descriptions)
        planes = []
        for band in bands:
            values = src.read(names.index(band) + 1)
            planes.append(decode_db(values) if band in RADAR_BANDS
                          else values.astype(np.float32))
    return np.stack(planes)


def _edges(cover: NDArray[Any], width: int = 2) -> NDArray[np.bool_]:
    from scipy.ndimage import maximum_filter, minimum_filter

    size = 2 * width + 1
    return maximum_filter(cover, size) != minimum_filter(cover, size)


def synthetic(work: Path, side: int = 512, seed: int = 0, per_class: int = 4000
              ) -> dict[str, Any]:
    """Sections 1 and 2 on a fresh landscape of ``side`` px (see the module doc)."""
    from serving.imagery.composite import write_composite
    from serving.imagery.sources import in_period, items_from_file, load_items
    from training.synthetic import LandscapeConfig
    from training.synthetic.spectra import S2_BANDS
    from training.synthetic.time_series import generate_time_series

    data = generate_time_series(work / "ts", LandscapeConfig(size=side, seed=seed,
                                                             acquisitions=3),
                                progress=False)
    truth = json.loads((data / "truth.json").read_text())
    date, period = list(truth["periods"].items())[-1]
    items = in_period(items_from_file(data / "stac" / "catalog.json"), period)
    optical = work / "optical.tif"
    write_composite(load_items(items, S2_BANDS), optical, period=period)
    files = [describe(p) for p in sorted((data / "radar").glob("*.tif"))]
    stacks = {"none": stack_radar(optical, files, work / "s1s2.tif", period=period),
              "lee": stack_radar(optical, [dataclasses.replace(f, speckle=LEE)
                                           for f in files],
                                 work / "s1s2_lee.tif", period=period)}
    with rasterio.open(data / "labels" / f"cover_{date}.tif") as src:
        cover = src.read(1)
    codes = sorted(int(c) for c in np.unique(cover) if c != 0)
    rng = np.random.default_rng(seed)
    north = np.zeros(cover.shape, bool)
    north[: side // 2] = True
    train_idx = np.concatenate([
        rng.permutation(np.flatnonzero(north.ravel() & (cover.ravel() == c)))[:per_class]
        for c in codes])
    test = ~north & (cover != 0)
    edge = _edges(cover) & test
    variants: dict[str, tuple[str, list[str]]] = {"all statistics": ("none", list(RADAR_BANDS))}
    for family, owned in FAMILIES.items():
        variants[f"without {family}"] = ("none", [b for b in RADAR_BANDS if b not in owned])
    variants["without means and percentiles"] = ("none", [
        b for b in RADAR_BANDS if b not in FAMILIES["means"] + FAMILIES["percentiles"]])
    variants["means alone"] = ("none", list(FAMILIES["means"]))
    variants["all statistics, Lee 5x5"] = ("lee", list(RADAR_BANDS))
    variants["optical alone"] = ("none", list(S2_BANDS))
    variants["optical + all statistics"] = ("none", [*S2_BANDS, *RADAR_BANDS])
    results: dict[str, Any] = {}
    for name, (stack, bands) in variants.items():
        x = _features(stacks[stack].path, bands).reshape(len(bands), -1).T
        x = np.nan_to_num(x, nan=-999.0)  # unseen (clouds, for optical): its own value
        model = _forest(x[train_idx], cover.ravel()[train_idx], seed)
        guess = model.predict(x[test.ravel()])
        on_edge = edge.ravel()[test.ravel()]
        results[name] = {"bands": bands, "iou": _iou(cover[test], guess, codes),
                         "iou_at_edges": _iou(cover[test][on_edge], guess[on_edge], codes)}
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(cover == 1, iterations=4)
    speckle = {stack: round(float(np.nanstd(_features(r.path, ["VH_mean_db"])[0][interior])),
                            3) for stack, r in stacks.items()}
    return {"side": side, "seed": seed, "period": period,
            "radar_acquisitions": len(stacks["none"].radar_items),
            "train_pixels": int(train_idx.size), "test_pixels": int(test.sum()),
            "edge_test_pixels": int(edge.sum()), "variants": results,
            "forest_interior_vh_mean_std_db": speckle}


def _uniform_windows_enl(power: NDArray[np.float32], side: int = 15) -> float:
    """Median ENL of the 10 % most uniform ``side`` x ``side`` windows."""
    rows, cols = power.shape[0] // side, power.shape[1] // side
    enl = [equivalent_looks(power[r * side:(r + 1) * side, c * side:(c + 1) * side])
           for r in range(rows) for c in range(cols)]
    finite = np.array([e for e in enl if np.isfinite(e)])
    return round(float(np.median(np.sort(finite)[-max(1, finite.size // 10):])), 2)


def real(work: Path, seed: int = 0) -> dict[str, Any]:
    """Section 3 (see the module doc)."""
    from sklearn.model_selection import StratifiedKFold

    from serving.radar.acquisitions import read_onto

    scene = describe(REAL / "pyrosar" / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif")
    with rasterio.open(scene.vv[0]) as src:
        crs, transform, height, width = src.crs, src.transform, src.height, src.width
    before = read_onto(scene.vv, scene.units, None, crs, transform, height, width)
    after = read_onto(scene.vv, scene.units, None, crs, transform, height, width, LEE)
    rondonia = REAL / "rondonia-l8-s1"
    grid = work / "rondonia_grid.tif"
    with rasterio.open(rondonia / "img_l8.tif") as src:
        profile = src.profile | {"count": 1, "dtype": "uint16", "nodata": None}
        with rasterio.open(grid, "w", **profile) as dst:
            dst.write(np.ones((1, src.height, src.width), np.uint16))
    points = list(csv.DictReader((rondonia / "endm_points.csv").open()))
    labels = np.array([int(p["class"]) for p in points])
    accuracy = {}
    radar_bands = ["VV_mean_db", "VH_mean_db", "VHVV_ratio_db"]
    for name, speckle in (("none", Speckle()), ("lee", LEE)):
        radar = dataclasses.replace(describe(rondonia / "img_radar.tif"), speckle=speckle)
        stacked = stack_radar(grid, [radar], work / f"rondonia_{name}.tif").path
        data = _features(stacked, radar_bands)
        with rasterio.open(stacked) as src:
            at = [src.index(float(p["lon"]), float(p["lat"])) for p in points]
        right = 0
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        for train, test in folds.split(np.zeros(len(labels)), labels):
            x, y = [], []
            for i in train:
                r, c = at[i]
                patch = data[:, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                x.append(patch.reshape(len(radar_bands), -1).T)
                y += [labels[i]] * patch[0].size
            model = _forest(np.concatenate(x), np.array(y), seed)
            guess = model.predict(np.array([data[:, r, c] for r, c in
                                            (at[i] for i in test)]))
            right += int((guess == labels[test]).sum())
        accuracy[name] = round(right / len(labels), 3)
    return {"pyrosar_enl_uniform_windows": {"none": _uniform_windows_enl(before),
                                            "lee": _uniform_windows_enl(after)},
            "rondonia_radar_only_accuracy": accuracy, "rondonia_points": len(points),
            "filter": LEE.describe()}


def radar_statistics_bench(work: Path, side: int = 512, seeds: tuple[int, ...] = (0, 1, 2)
                           ) -> dict[str, Any]:
    """All three sections, section 1 and 2 on one landscape per seed.

    Returns:
        Per seed the variants' IoU; ``summary``: per variant the macro IoU (all pixels
        and at edges) and its difference from all statistics, mean and range over the
        seeds; ``real``: section 3.
    """
    work.mkdir(parents=True, exist_ok=True)
    runs = {str(seed): synthetic(work / f"synthetic_{seed}", side, seed) for seed in seeds}
    summary: dict[str, Any] = {}
    for name in next(iter(runs.values()))["variants"]:
        row: dict[str, Any] = {}
        for key in ("iou", "iou_at_edges"):
            macro = [r["variants"][name][key]["macro"] for r in runs.values()]
            delta = [m - r["variants"]["all statistics"][key]["macro"]
                     for m, r in zip(macro, runs.values(), strict=True)]
            row[key] = {"macro_mean": round(float(np.mean(macro)), 3),
                        "vs_all_mean": round(float(np.mean(delta)), 3),
                        "vs_all_range": [round(min(delta), 3), round(max(delta), 3)]}
        for cls in ("cocoa_agroforestry", "oil_palm"):
            row[cls] = round(float(np.mean([r["variants"][name]["iou"][cls]
                                            for r in runs.values()])), 3)
        summary[name] = row
    speckle = {k: round(float(np.mean([r["forest_interior_vh_mean_std_db"][k]
                                       for r in runs.values()])), 3)
               for k in ("none", "lee")}
    return {"side": side, "seeds": list(seeds), "synthetic": runs, "summary": summary,
            "forest_interior_vh_mean_std_db": speckle, "real": real(work, seeds[0])}
