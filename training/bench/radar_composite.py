"""Benchmarks: the radar composite beside the optical one, and the optical one vs a peer.

1. Radar: ``N`` Sentinel-1 acquisitions (VV, VH, linear power, 20 m, speckled) of a
   ``side``² area at 10 m are stacked by :func:`serving.radar.stack.stack_radar` onto
   that area's optical composite, in a child process (seconds and its own peak RSS).
2. Peer: on the optical bench's own acquisitions (:mod:`training.bench.composite`), what
   a user would write instead of ``cacaomap imagery composite`` — ``odc.stac.load`` of
   the bands and SCL, SCL mask grown by the same 2 px, the BOA offset removed,
   ``xarray`` median and clear count, written as a COG with ``odc.geo`` — timed in a
   child process against ``write_composite`` on the same items, with the outputs
   compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from training.bench.composite import write_acquisitions
from training.synthetic.spectra import S2_BANDS

_STACK = """
import json, sys, time
from serving.radar.acquisitions import describe
from serving.radar.stack import stack_radar
files = [describe(p) for p in json.loads(sys.argv[3])]
start = time.perf_counter()
result = stack_radar(sys.argv[1], files, sys.argv[2], workers=int(sys.argv[4]))
elapsed = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024,
                  "radar_seen_fraction": result.radar_seen_fraction}))
"""

_CACAOMAP = """
import json, sys, time
import dask
from serving.imagery.sources import items_from_file, load_items
from serving.imagery.composite import write_composite
items = items_from_file(sys.argv[1])
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=1):
    write_composite(load_items(items, json.loads(sys.argv[3])), sys.argv[2],
                    blocks_at_once=1)
elapsed = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024}))
"""

#: The idiomatic odc-stac composite a user would write, with cacaomap's rules: SCL 2, 4,
#: 5, 6, 7 clear, clouds and shadows (3, 8, 9, 10) grown by 2 px across chunk edges,
#: the BOA offset of baseline 04.00+ removed (at least 1 DN), median of what is clear.
_PEER = """
import json, sys, time
import dask, numpy as np, xarray as xr
from scipy.ndimage import binary_dilation
import odc.stac
from odc.geo.xr import write_cog
from serving.imagery.sources import items_from_file
items = list(items_from_file(sys.argv[1]))
bands = json.loads(sys.argv[3])
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=1):
    import rasterio
    from odc.geo.geobox import GeoBox
    with rasterio.open(items[0].assets[bands[0]].href) as first:  # the same grid
        geobox = GeoBox(first.shape, first.transform, first.crs.to_string())
    ds = odc.stac.load(items, bands=[*bands, "SCL"], chunks={"x": 512, "y": 512},
                       geobox=geobox)
    scl = ds.SCL.data
    cloud = scl.map_blocks(np.isin, [3, 8, 9, 10], dtype=bool)
    grown = cloud.map_overlap(
        lambda a: np.stack([binary_dilation(x, iterations=2) for x in a]),
        depth=(0, 2, 2), boundary="none", dtype=bool)
    clear = xr.DataArray(~grown, dims=ds.SCL.dims) & ds.SCL.isin([2, 4, 5, 6, 7])
    data = ds[bands].to_array("band").astype("float32")
    data = np.maximum(data - 1000, 1).where(clear & (data > 0))
    median = data.median("time", skipna=True)
    count = clear.sum("time")
    out = xr.concat([median.fillna(0).clip(0, 65535).round().astype("uint16"),
                     count.astype("uint16").expand_dims(band=["clear_count"])], "band")
    write_cog(out.compute(), sys.argv[2], overwrite=True, compress="DEFLATE")
elapsed = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm / 1024}))
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, check=True, timeout=3600)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def write_radar_inputs(folder: Path, side: int, count: int, seed: int = 0
                       ) -> tuple[Path, list[Path]]:
    """An optical composite of ``side``² at 10 m and ``count`` radar files over it."""
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(333_000, 9_097_000, 10, 10)
    optical = folder / f"optical_{side}.tif"
    if not optical.exists():
        profile = {"driver": "GTiff", "width": side, "height": side,
                   "count": len(S2_BANDS) + 1, "dtype": "uint16", "crs": "EPSG:32718",
                   "transform": transform, "nodata": 0, "tiled": True,
                   "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
        with rasterio.open(optical, "w", **profile) as dst:
            for r in range(0, side, 512):
                h = min(512, side - r)
                block = np.full((len(S2_BANDS) + 1, h, side), 1500, np.uint16)
                block[-1] = 4
                dst.write(block, window=rasterio.windows.Window(0, r, side, h))
            dst.descriptions = (*S2_BANDS, "clear_count")
    rng = np.random.default_rng(seed)
    files = []
    half = side // 2
    for k in range(count):
        path = folder / f"s1_{side}_202401{k + 1:02d}_linear.tif"
        files.append(path)
        if path.exists():
            continue
        with rasterio.open(path, "w", driver="GTiff", width=half, height=half, count=2,
                           dtype="float32", crs="EPSG:32718",
                           transform=transform * transform.scale(2), tiled=True,
                           blockxsize=512, blockysize=512) as dst:
            for r in range(0, half, 512):
                h = min(512, half - r)
                speckle = rng.gamma(4.4, 1 / 4.4, (2, h, half)).astype(np.float32)
                level = np.array([0.2, 0.05], np.float32)[:, None, None]
                dst.write(level * speckle, window=rasterio.windows.Window(0, r, half, h))
            dst.descriptions = ("VV", "VH")
    return optical, files


def radar_composite_bench(work: Path, sides: tuple[int, ...] = (2048, 4096),
                          count: int = 12, workers: int = 2) -> dict[str, Any]:
    """Seconds and peak RSS of the radar statistics of ``count`` acquisitions per side.

    Each side is stacked with one worker (the store's way) and with ``workers``
    threads (``imagery stack-radar``'s default), the outputs compared byte for byte.
    """
    runs: dict[str, Any] = {}
    for side in sides:
        optical, files = write_radar_inputs(work, side, count)
        outs = [work / f"stacked_{side}_{n}.tif" for n in (1, workers)]
        paths = json.dumps([str(f) for f in files])
        runs[str(side)] = _child(_STACK, str(optical), str(outs[0]), paths, "1")
        threaded = _child(_STACK, str(optical), str(outs[1]), paths, str(workers))
        runs[str(side)] |= {"workers": workers, "seconds_threaded": threaded["seconds"],
                            "peak_rss_mb_threaded": threaded["peak_rss_mb"],
                            "threaded_speedup": runs[str(side)]["seconds"]
                            / threaded["seconds"],
                            "same_bytes": outs[0].read_bytes() == outs[1].read_bytes()}
        for out in outs:
            out.unlink(missing_ok=True)
    small, large = str(min(sides)), str(max(sides))
    return {"acquisitions": count, "runs": runs,
            "rss_ratio_large_over_small": runs[large]["peak_rss_mb"]
            / runs[small]["peak_rss_mb"],
            "time_ratio_large_over_small": runs[large]["seconds"] / runs[small]["seconds"]}


def composite_vs_peer(work: Path, sides: tuple[int, ...] = (2048, 4096), count: int = 6
                      ) -> dict[str, Any]:
    """``write_composite`` against the idiomatic odc-stac composite, same items, same run.

    Returns:
        Per side: both runs' seconds and peak RSS, the time and memory ratios
        (cacaomap / peer) and the largest difference between the two outputs' bands.
    """
    result: dict[str, Any] = {"acquisitions": count}
    for side in sides:
        items = write_acquisitions(work, side, count)
        ours, theirs = work / f"ours_{side}.tif", work / f"peer_{side}.tif"
        bands = json.dumps(list(S2_BANDS))
        mine = _child(_CACAOMAP, str(items), str(ours), bands)
        peer = _child(_PEER, str(items), str(theirs), bands)
        with rasterio.open(ours) as a, rasterio.open(theirs) as b:
            difference = max(int(np.abs(a.read(i).astype(np.int32)
                                        - b.read(i).astype(np.int32)).max())
                             for i in range(1, a.count + 1))
        result[str(side)] = {"cacaomap": mine, "peer": peer,
                             "time_ratio": mine["seconds"] / peer["seconds"],
                             "rss_ratio": mine["peak_rss_mb"] / peer["peak_rss_mb"],
                             "max_abs_difference_dn": difference}
        ours.unlink(missing_ok=True)
        theirs.unlink(missing_ok=True)
    return result
