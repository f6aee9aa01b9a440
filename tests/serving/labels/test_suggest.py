"""Suggested points: the most uncertain pixels, a class-balanced random sample, spread."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point, box

from cacaomap.main import main
from serving.classes import load_classes
from serving.inference.confidence import CONFIDENCE_NODATA
from serving.labels.suggest import SuggestError, class_quotas, pixel_keys, suggest_labels

SIDE = 200  # 10-m pixels: 2 km
ORIGIN = (333_000.0, 9_097_000.0)
UNSURE = (slice(20, 120), slice(60, 160))  # 1 km² where the model is unsure


@pytest.fixture(scope="module")
def class_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Forest / cocoa / palm halves and stripes, a nodata corner, 3 pixels of class 4."""
    root = tmp_path_factory.mktemp("maps")
    codes = np.ones((SIDE, SIDE), np.uint8)
    codes[:, 100:] = 2
    codes[150:, :] = 3
    codes[:30, :30] = 0  # nodata
    for r, c in ((40, 10), (90, 10), (140, 10)):
        codes[r, c] = 4  # a rare class
    conf = np.full((SIDE, SIDE), 95, np.uint8)
    conf[UNSURE] = 40
    conf[codes == 0] = CONFIDENCE_NODATA
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": 1,
               "dtype": "uint8", "crs": "EPSG:32718",
               "transform": from_origin(*ORIGIN, 10, 10)}
    path = root / "tocache.classes.tif"
    with rasterio.open(path, "w", nodata=0, **profile) as dst:
        dst.write(codes[None])
    with rasterio.open(root / "tocache.confidence.tif", "w", nodata=CONFIDENCE_NODATA,
                       **profile) as dst:
        dst.write(conf[None])
    return path


def _utm(frame: gpd.GeoDataFrame) -> np.ndarray:
    pts = frame.to_crs(32718).geometry
    return np.column_stack([pts.x, pts.y])


def _min_distance(xy: np.ndarray) -> float:
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    return float(d[~np.eye(len(xy), dtype=bool)].min())


def _pixels(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cols = ((xy[:, 0] - ORIGIN[0]) // 10).astype(int)
    rows = ((ORIGIN[1] - xy[:, 1]) // 10).astype(int)
    return rows, cols


def test_uncertain_points_are_the_unsure_pixels_spread_apart(class_map: Path) -> None:
    frame, notes = suggest_labels([class_map], 20, load_classes(), "uncertainty",
                                  min_distance_m=80)
    assert len(frame) == 20 and notes == []
    assert np.allclose(frame["uncertainty"], 0.6)
    assert frame["label"].isna().all() and set(frame["strategy"]) == {"uncertainty"}
    xy = _utm(frame)
    assert _min_distance(xy) >= 80
    rows, cols = _pixels(xy)
    assert ((rows >= 20) & (rows < 120) & (cols >= 60) & (cols < 160)).all()
    names = dict(zip(frame["map_class"], frame["map_class_name"], strict=True))
    assert names.get(1, "forest") == "forest" and names.get(2) == "cocoa_agroforestry"


def test_random_points_are_balanced_per_class_and_a_rare_class_passes_its_share_on(
        class_map: Path) -> None:
    frame, _ = suggest_labels([class_map], 31, load_classes(), "random", min_distance_m=30)
    counts = frame["map_class"].value_counts().to_dict()
    assert counts[4] == 3  # all it has
    assert sorted(counts[c] for c in (1, 2, 3)) == [9, 9, 10]  # the other 28, evenly
    rows, cols = _pixels(_utm(frame))
    assert not ((rows < 30) & (cols < 30)).any()  # never nodata
    assert class_quotas(10, [1, 2, 3], {1: 100, 2: 1, 3: 100}) == {1: 5, 2: 1, 3: 4}


def test_the_choice_does_not_depend_on_the_block_size(class_map: Path) -> None:
    one, _ = suggest_labels([class_map], 30, load_classes(), "mix", block=1024, seed=3)
    tiny, _ = suggest_labels([class_map], 30, load_classes(), "mix", block=48, seed=3)
    assert one.to_json() == tiny.to_json()
    other, _ = suggest_labels([class_map], 30, load_classes(), "mix", block=48, seed=4)
    assert other.to_json() != one.to_json()
    assert (one["strategy"] == "uncertainty").sum() == 15  # mix: half by uncertainty
    keys = pixel_keys(0, np.arange(10_000), np.zeros(10_000, np.int64), 0)
    assert 0 <= keys.min() and keys.max() < 1 and abs(keys.mean() - 0.5) < 0.02


def test_zones_keep_points_inside_and_labels_keep_them_away(class_map: Path,
                                                            tmp_path: Path) -> None:
    zone = box(ORIGIN[0] + 1000, ORIGIN[1] - 2000, ORIGIN[0] + 2000, ORIGIN[1] - 1000)
    zones = tmp_path / "zones.geojson"
    gpd.GeoDataFrame(geometry=[zone], crs=32718).to_file(zones)
    labelled = tmp_path / "labelled.geojson"
    near = Point(ORIGIN[0] + 1500, ORIGIN[1] - 1500)
    gpd.GeoDataFrame(geometry=[near], crs=32718).to_file(labelled)
    frame, _ = suggest_labels([class_map], 15, load_classes(), "random", zones=zones,
                              away_from=labelled, min_distance_m=150)
    xy = _utm(frame)
    assert all(zone.contains(Point(*p)) for p in xy)
    assert np.sqrt(((xy - [near.x, near.y]) ** 2).sum(1)).min() >= 150


def test_what_cannot_be_placed_is_said(class_map: Path) -> None:
    frame, notes = suggest_labels([class_map], 50, load_classes(), "uncertainty",
                                  min_distance_m=300)
    assert len(frame) < 50 and any("lower --min_distance_m" in n for n in notes)


def test_the_cli_writes_geojson_and_bad_input_is_one_line(
        class_map: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "to_label.geojson"
    main(["labels", "suggest", str(class_map.parent), str(out), "--n", "12",
          "--min-distance-m", "50"])
    features = json.loads(out.read_text())["features"]
    assert len(features) == 12
    props = features[0]["properties"]
    assert {"label", "map_class", "map_class_name", "uncertainty", "strategy",
            "source"} <= set(props) and props["label"] is None
    assert props["source"] == "tocache.classes.tif"
    assert "wrote 12 points to label" in capsys.readouterr().out
    main(["labels", "suggest", str(class_map), str(tmp_path / "o.geojson"),
          "--strategy", "olofsson"])
    sample = json.loads((tmp_path / "o.geojson").read_text())["features"]
    assert sample and {f["properties"]["strategy"] for f in sample} == {"olofsson"}
    assert all(f["properties"]["uncertainty"] in (0.05, 0.6) for f in sample)
    bare = tmp_path / "bare.classes.tif"
    bare.write_bytes(class_map.read_bytes())
    # Without a confidence COG, random points have no uncertainty (not a made-up one).
    frame, _ = suggest_labels([bare], 8, load_classes(), "random")
    assert len(frame) == 8 and frame["uncertainty"].isna().all()
    with pytest.raises(SystemExit) as stop:
        main(["labels", "suggest", str(bare), str(tmp_path / "x.geojson")])
    assert str(stop.value).startswith("cacaomap labels suggest: ")
    assert "has no confidence COG beside it (bare.confidence.tif)" in str(stop.value)
    assert not (tmp_path / "x.geojson").exists()
    with pytest.raises(SuggestError, match="n must be at least 1"):
        suggest_labels([class_map], 0, load_classes())
