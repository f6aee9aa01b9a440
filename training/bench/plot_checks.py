"""Benchmark: 10,000 plots checked against a one-tile store, a 2 x 2-cell store, the service.

A Sentinel-2 tile's worth of class maps (10980² px at 10 m, two periods, with
confidence) is written as a store of one cell and, the same pixels, as a store of 2 x 2
cells. 10,000 plots of 1-4 ha (half declared as points with ``Area``, half as
polygons) are checked against each in a child process (time and peak RSS, ``VmHWM``,
its own); the same plots as polygons go through ``cacaomap maps baseline`` on the one-tile
maps (what the product did before the store: whole maps in memory); and through
``POST /plots`` of a real ``bentoml serve`` started on the one-tile store. The one-tile
check runs again with three reference layers beside the store (a JRC-style forest map
at 10 m, Hansen-style tree cover and loss year at 30 m, RADD-style alerts at 10 m, all
in EPSG:4326 as the products are; :mod:`training.synthetic.reference_layers`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from shapely.geometry import box, mapping

from serving.store.grid import Cell, lattice, to_lonlat
from serving.store.reader import PERIODS
from training.synthetic.store import write_class_store, write_cog

SIDE = 10980
#: The tile's upper-left corner on the UTM 18S lattice (near Tocache), in pixels.
ROW0, COL0 = 90_300, 33_300
PATCH_PX = 30

#: A plot check in a child process: store, plots, and optionally the layers' setting.
_CHILD_CHECK = """
import json, sys, time
start = time.perf_counter()
from serving.plots.check import CheckOptions, run_checks
from serving.references.layers import open_layers
from serving.store.reader import open_store
body = open(sys.argv[2], "rb").read()
layers = open_layers(sys.argv[3]) if len(sys.argv) > 3 else None
plots, records, summary = run_checks(body, open_store(sys.argv[1]), CheckOptions(),
                                     references=layers)
elapsed = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024, "plots": len(records),
                  "verdicts": summary["verdicts"]}))
"""

_CHILD_BASELINE = """
import json, sys, time
start = time.perf_counter()
from serving.baseline.report import build_report
from serving.classes import load_classes
report, _, _ = build_report(sys.argv[1], sys.argv[2], load_classes(), sys.argv[3])
elapsed = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024,
                  "plots": len(report["zones"])}))
"""


def landscape(side: int = SIDE, seed: int = 0) -> tuple[
        NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """Reference and current class maps of patches, and a confidence, all side²."""
    rng = np.random.default_rng(seed)
    n = side // PATCH_PX + 1
    ref = rng.choice([1, 2, 3, 4, 5], size=(n, n), p=[0.6, 0.15, 0.1, 0.1, 0.05])
    cur = ref.copy()
    lost = (ref == 1) & (rng.random((n, n)) < 0.15)
    cur[lost] = rng.choice([2, 3, 4], size=int(lost.sum()))
    cur[rng.random((n, n)) < 0.03] = 0  # never observed at the current date
    grow = np.ones((PATCH_PX, PATCH_PX), np.uint8)
    big_ref = np.kron(ref.astype(np.uint8), grow)[:side, :side]
    big_cur = np.kron(cur.astype(np.uint8), grow)[:side, :side]
    conf = np.kron(rng.integers(40, 100, (n, n)).astype(np.uint8), grow)[:side, :side]
    # Speckle, as real class maps have: 5% of pixels of a random class (it also keeps
    # the COGs from compressing far better than real maps would).
    for layer in (big_ref, big_cur):
        speckle = rng.random(layer.shape, dtype=np.float32) < 0.05
        layer[speckle] = rng.integers(1, 6, int(speckle.sum()), dtype=np.uint8)
    conf += rng.integers(0, 10, conf.shape, dtype=np.uint8)
    return big_ref, big_cur, conf


def write_plots(folder: Path, count: int, side: int = SIDE, seed: int = 1
                ) -> tuple[Path, Path]:
    """EUDR statement of ``count`` plots of 1-4 ha in the tile, and the same as polygons."""
    rng = np.random.default_rng(seed)
    origin = lattice(10.0) * (COL0, ROW0)
    sides = np.sqrt(rng.uniform(1, 4, count) * 10_000)
    margin = min(500.0, side * 10 / 4)
    xs = origin[0] + rng.uniform(margin, side * 10 - margin - 200, count)
    ys = origin[1] - rng.uniform(margin + 200, side * 10 - margin, count)
    squares = [box(x, y, x + s, y + s) for x, y, s in zip(xs, ys, sides, strict=True)]
    lonlat = [to_lonlat(g, "EPSG:32718") for g in squares]
    eudr, polygons = [], []
    for i, (g, s) in enumerate(zip(lonlat, sides, strict=True)):
        props = {"ProducerName": f"P{i}", "ProducerCountry": "PE",
                 "Area": round(float(s * s / 10_000), 4), "plot_id": f"B{i:05d}"}
        geom = mapping(g.centroid) if i % 2 else mapping(g)
        eudr.append({"type": "Feature", "properties": props, "geometry": geom})
        polygons.append({"type": "Feature", "properties": props, "geometry": mapping(g)})
    paths = folder / "plots_eudr.geojson", folder / "plots_polygons.geojson"
    for path, features in zip(paths, (eudr, polygons), strict=True):
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return paths


def write_stores(folder: Path, side: int = SIDE) -> tuple[Path, Path, Path, Path]:
    """(one-cell store, 2 x 2 store, reference map, current map), written once."""
    one, four = folder / "store_1x1", folder / "store_2x2"
    ref_path, cur_path = folder / "ref_classes.tif", folder / "cur_classes.tif"
    if (one / "store.json").exists() and (four / "store.json").exists():
        return one, four, ref_path, cur_path
    ref, cur, conf = landscape(side)
    tile = Cell("18S_tile", 18, True, ROW0, COL0, side, 10.0)
    region = to_lonlat(box(*tile.bounds), tile.utm.crs)
    write_cog(ref_path, ref, tile, 0)
    write_cog(cur_path, cur, tile, 0)
    layers = {"reference": ref, "current": cur}

    def maps(cell: Cell, period: str) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        r, c = cell.row_off - ROW0, cell.col_off - COL0
        window = (slice(r, r + cell.size), slice(c, c + cell.size))
        return layers[period][window], conf[window]

    write_class_store(one, [tile], maps, region)
    half = side // 2
    quarters = [Cell(f"18S_q{i}{j}", 18, True, ROW0 + i * half, COL0 + j * half, half, 10.0)
                for i in range(2) for j in range(2)]
    write_class_store(four, quarters, maps, region)
    return one, four, ref_path, cur_path


def write_reference_layers_for(folder: Path, side: int = SIDE) -> str:
    """The tile's three reference layers (written once); the ``spec=path;...`` setting."""
    from training.synthetic.reference_layers import write_reference_layers

    names = ("jrc_gfc2020", "hansen_gfc", "radd")
    setting = ";".join(f"{n}={folder / 'layers' / n}" for n in names)
    if all((folder / "layers" / n).is_dir() for n in names):
        return setting
    ref, cur, _ = landscape(side)
    tile = Cell("18S_tile", 18, True, ROW0, COL0, side, 10.0)
    write_reference_layers(folder / "layers", ref, cur, tile.utm.crs, tile.transform, 0)
    return setting


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                         text=True, timeout=1800, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _service(store: Path, model_dir: Path, body: Path, work: Path) -> dict[str, Any]:
    import httpx
    import psutil

    from serving.http.local_server import served_model

    with served_model(model_dir, log_path=work / "plots-serve.log",
                      extra_env={"CACAOMAP_STORE": str(store)}) as url:
        start = time.perf_counter()
        r = httpx.post(f"{url}/plots", content=body.read_bytes(), timeout=900,
                       headers={"content-type": "application/geo+json"})
        elapsed = time.perf_counter() - start
        root = psutil.Process(url.pid)
        rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    answer = r.json() if r.status_code == 200 else {}
    return {"seconds": elapsed, "status": r.status_code, "bytes": len(r.content),
            "server_rss_mb_after": rss / 2**20, "verdicts": answer.get("verdicts")}


def plots_bench(work: Path, model_dir: Path, count: int = 10_000, side: int = SIDE
                ) -> dict[str, Any]:
    """Plot checks at scale: one-tile store, 2 x 2 store, before, and the service."""
    work.mkdir(parents=True, exist_ok=True)
    one, four, ref, cur = write_stores(work, side)
    eudr, polygons = write_plots(work, count, side)
    result: dict[str, Any] = {"plots": count, "tile_px": side, "periods": list(PERIODS)}
    result["store_1x1"] = _child(_CHILD_CHECK, str(one), str(eudr))
    result["store_1x1_references"] = _child(_CHILD_CHECK, str(one), str(eudr),
                                            write_reference_layers_for(work, side))
    result["references_time_ratio"] = (result["store_1x1_references"]["seconds"]
                                       / result["store_1x1"]["seconds"])
    result["store_2x2"] = _child(_CHILD_CHECK, str(four), str(eudr))
    result["baseline_before"] = _child(_CHILD_BASELINE, str(ref), str(cur), str(polygons))
    result["service"] = _service(one, model_dir, eudr, work)
    return result
