"""Benchmark: compositing N acquisitions of an area, time and peak memory, 1 vs 2 workers.

Each measurement runs ``write_composite`` in a child process (its peak RSS, ``VmHWM``,
is its own). The acquisitions are STAC items of per-band GeoTIFFs written once per side
(10 bands and an SCL layer with clouds that move from date to date), so that what is
timed is reading, masking, harmonising, the median and writing the COG, as
``cacaomap imagery composite`` does.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from serving.imagery.safe import item_from_files
from training.synthetic.spectra import S2_BANDS

#: Peak RSS a composite of the largest measured area must stay under.
RSS_BUDGET_MB = 4096

_CHILD = """
import json, sys, time
import dask
from serving.imagery.sources import items_from_file, load_items
from serving.imagery.composite import write_composite
items = items_from_file(sys.argv[1])
bands = json.loads(sys.argv[3])
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=int(sys.argv[4])):
    loaded = load_items(items, bands)
    result = write_composite(loaded, sys.argv[2], blocks_at_once=int(sys.argv[4]))
elapsed = time.perf_counter() - start
status = open("/proc/self/status").read()
hwm_kb = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm_kb / 1024,
                  "never_clear_fraction": result.never_clear_fraction}))
"""


def write_acquisitions(folder: Path, side: int, count: int, seed: int = 0) -> Path:
    """``count`` items of a ``side``² area at 10 m as an ItemCollection JSON; its path."""
    import pystac

    collection = folder / f"items_{side}_{count}.json"
    if collection.exists():
        return collection
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 1,
               "crs": "EPSG:32718", "transform": from_origin(333_000, 9_097_000, 10, 10),
               "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate", "predictor": 2}
    base = (np.add.outer(np.arange(side), np.arange(side)) % 997).astype(np.float32)
    items = []
    for k in range(count):
        item_dir = folder / f"{side}" / f"a{k}"
        item_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for b, band in enumerate(S2_BANDS):
            path = item_dir / f"{band}.tif"
            with rasterio.open(path, "w", dtype="uint16", **profile) as dst:
                dst.write((300 + 200 * b + base + 50 * k).astype(np.uint16), 1)
            files[band] = path
        scl = np.full((side, side), 4, np.uint8)
        for _ in range(8):  # cloud blocks that move from date to date
            r, c = rng.integers(0, side - side // 6, 2)
            scl[r: r + side // 6, c: c + side // 6] = 9
        path = item_dir / "SCL.tif"
        with rasterio.open(path, "w", dtype="uint8", **profile) as dst:
            dst.write(scl, 1)
        files["SCL"] = path
        items.append(item_from_files(
            f"a{k}", dt.datetime(2024, 1 + k % 12, 15, tzinfo=dt.UTC), files,
            properties={"s2:processing_baseline": "05.10"},
            offsets={b: -1000.0 for b in S2_BANDS}))
    pystac.ItemCollection(items).save_object(dest_href=str(collection))
    return collection


def composite_bench(work: Path, sides: tuple[int, ...] = (2048, 4096), count: int = 6
                    ) -> dict[str, Any]:
    """Time and peak RSS of compositing ``count`` acquisitions per side, 1 and 2 workers.

    Returns:
        Per side and worker count: seconds and peak RSS (MB); growth ratios from the
        smallest to the largest side; whether the largest stayed under the budget.
    """
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    for side in sides:
        items = write_acquisitions(work, side, count)
        for workers in (1, 2):
            out = work / f"composite_{side}_{workers}.tif"
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(items), str(out),
                 json.dumps(list(S2_BANDS)), str(workers)],
                capture_output=True, text=True, check=True)
            runs[f"{side}_w{workers}"] = json.loads(done.stdout.strip().splitlines()[-1])
            out.unlink(missing_ok=True)
    small, large = min(sides), max(sides)
    area = (large / small) ** 2
    return {
        "acquisitions": count,
        "bands": len(S2_BANDS),
        "runs": runs,
        "area_ratio": area,
        "time_ratio_large_over_small": runs[f"{large}_w1"]["seconds"]
        / runs[f"{small}_w1"]["seconds"],
        "rss_ratio_large_over_small": runs[f"{large}_w1"]["peak_rss_mb"]
        / runs[f"{small}_w1"]["peak_rss_mb"],
        "speedup_2_workers": {str(s): runs[f"{s}_w1"]["seconds"] / runs[f"{s}_w2"]["seconds"]
                              for s in sides},
        "peak_rss_under_budget": max(r["peak_rss_mb"] for r in runs.values())
        <= RSS_BUDGET_MB,
        "rss_budget_mb": RSS_BUDGET_MB,
    }
