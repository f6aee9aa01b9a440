"""Plot checks on class maps whose answer is known: areas, the forest rule, zones, confidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from serving.classes import load_classes
from serving.inference.confidence import CONFIDENCE_NODATA, confidence_path
from serving.plots.check import CheckOptions, check_plots, run_checks
from serving.plots.geolocation import read_plots
from serving.store.grid import plan_cells, to_lonlat
from serving.store.landscape import store_landscape
from serving.store.reader import open_store, pair_of_maps
from training.synthetic.store import write_class_store

SCHEMA = load_classes()
FOREST, COCOA, OTHER = 1, 2, 5
CRS = "EPSG:32718"
LEFT, TOP = 330_000.0, 9_100_000.0


def write_map(path: Path, data: NDArray[np.uint8], nodata: int = 0) -> Path:
    """A class map (or confidence) of 10 m pixels at (LEFT, TOP) in UTM 18S."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", crs=CRS, transform=from_origin(LEFT, TOP, 10, 10),
                       nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def plots_of(*shapes: Any, crs: str = CRS) -> bytes:
    """Polygons given in ``crs`` as a lon/lat FeatureCollection (plot ids p0, p1, ...)."""
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"plot_id": f"p{i}"},
         "geometry": mapping(to_lonlat(g, crs))} for i, g in enumerate(shapes)]}).encode()


def pixel_box(col0: float, row0: float, col1: float, row1: float) -> Any:
    """A rectangle in map coordinates from (fractional) pixel columns and rows."""
    return box(LEFT + 10 * col0, TOP - 10 * row1, LEFT + 10 * col1, TOP - 10 * row0)


@pytest.fixture()
def maps(tmp_path: Path) -> tuple[Path, Path]:
    """Forest everywhere becoming cocoa, except two forest specks in 'other' land."""
    ref = np.full((200, 200), FOREST, np.uint8)
    ref[100:140, 100:140] = OTHER
    ref[110:114, 110:114] = FOREST  # a 0.16 ha speck
    ref[120:130, 120:130] = FOREST  # ... and a 1 ha patch, both inside other land
    cur = np.full_like(ref, COCOA)
    cur[150:200, :] = 0  # never observed at the current date
    return write_map(tmp_path / "ref.tif", ref), write_map(tmp_path / "cur.tif", cur)


def test_partial_pixels_count_by_their_exact_coverage(maps: tuple[Path, Path]) -> None:
    # 10 pixels wide and 10.5 high, starting mid-pixel: 1.05 ha of forest lost.
    body = plots_of(pixel_box(10.5, 10.25, 20.5, 20.75))
    plots, records, _ = run_checks(body, pair_of_maps(*maps, SCHEMA), CheckOptions())
    (r,) = records
    assert r["forest_loss_ha"] == pytest.approx(1.05, rel=2e-3)
    assert r["loss_to_cocoa_agroforestry_ha"] == pytest.approx(r["forest_loss_ha"])
    assert r["valid_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert r["verdict"] == "deforestation_detected"
    assert r["area_ha"] == pytest.approx(plots[0].area_ha)


def test_forest_counts_only_in_patches_of_half_a_hectare(maps: tuple[Path, Path]) -> None:
    body = plots_of(pixel_box(108, 108, 116, 116), pixel_box(118, 118, 132, 132))
    source = pair_of_maps(*maps, SCHEMA)
    speck, patch = run_checks(body, source, CheckOptions())[1]
    assert speck["forest_ref_ha"] == 0.0
    assert speck["forest_small_patches_ha"] == pytest.approx(0.16, rel=1e-3)
    assert speck["verdict"] == "deforestation_free"
    assert patch["forest_loss_ha"] == pytest.approx(1.0, rel=1e-3)
    assert patch["verdict"] == "deforestation_detected"
    # Without the rule, the speck's 0.16 ha read as deforestation.
    no_rule = run_checks(body, source, CheckOptions(min_forest_ha=0))[1][0]
    assert no_rule["forest_loss_ha"] == pytest.approx(0.16, rel=1e-3)
    assert no_rule["verdict"] == "deforestation_detected"


def test_a_patch_reaching_past_the_window_is_still_forest(maps: tuple[Path, Path]) -> None:
    # A small plot at the edge of the big forest: its patch runs far outside any window.
    body = plots_of(pixel_box(95, 95, 99, 99))
    (r,) = run_checks(body, pair_of_maps(*maps, SCHEMA), CheckOptions(chunk_px=16))[1]
    assert r["forest_ref_ha"] == pytest.approx(0.16, rel=1e-3)


def test_unobserved_plots_are_insufficient_data_never_free(maps: tuple[Path, Path]) -> None:
    body = plots_of(pixel_box(10, 160, 20, 170), pixel_box(10, 145, 20, 155))
    clouded, half = run_checks(body, pair_of_maps(*maps, SCHEMA), CheckOptions())[1]
    assert clouded["valid_fraction"] == 0.0
    assert clouded["verdict"] == "insufficient_data"
    assert half["valid_fraction"] == pytest.approx(0.5, abs=1e-3)
    assert half["verdict"] == "deforestation_detected"  # observed loss is reported


def test_outside_the_maps_is_an_error_for_that_plot_only(maps: tuple[Path, Path]) -> None:
    far = box(LEFT + 50_000, TOP - 60_000, LEFT + 50_100, TOP - 59_900)
    body = plots_of(far, pixel_box(10, 10, 20, 20))
    outside, inside = run_checks(body, pair_of_maps(*maps, SCHEMA), CheckOptions())[1]
    assert outside["verdict"] == "error" and "outside" in outside["error"]
    assert inside["verdict"] == "deforestation_detected"


def test_low_confidence_detections_need_review(maps: tuple[Path, Path]) -> None:
    ref, cur = maps
    conf = np.full((200, 200), 90, np.uint8)
    conf[:, 100:] = 40  # unsure east of column 100
    write_map(confidence_path(ref), conf, CONFIDENCE_NODATA)
    write_map(confidence_path(cur), conf, CONFIDENCE_NODATA)
    body = plots_of(pixel_box(10, 10, 20, 20), pixel_box(160, 10, 170, 20))
    sure, unsure = run_checks(body, pair_of_maps(ref, cur, SCHEMA), CheckOptions())[1]
    assert sure["forest_confidence"] == pytest.approx(0.9)
    assert sure["loss_confidence"] == pytest.approx(0.81)  # both dates right: 0.9 x 0.9
    assert sure["verdict"] == "deforestation_detected"
    assert unsure["loss_confidence"] == pytest.approx(0.16)
    assert unsure["verdict"] == "needs_review"
    assert "low_confidence" in unsure["flags"]


def test_a_plot_across_two_utm_zones_is_one_record_from_both(tmp_path: Path) -> None:
    # A region across 78 W, the boundary of zones 17S and 18S, in cells of 1.28 km.
    region = box(-78.02, -8.22, -77.98, -8.18)
    cells = plan_cells(region, 1280, 10)
    assert {c.zone for c in cells} == {17, 18}

    def maps(cell: Any, period: str) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        classes = np.full((cell.size, cell.size), FOREST if period == "reference" else COCOA,
                          np.uint8)
        return classes, np.full_like(classes, 80)

    write_class_store(tmp_path / "store", cells, maps, region)
    plot = box(-78.003, -8.203, -77.997, -8.197)  # ~44 ha, half in each zone
    body = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"plot_id": "straddle"},
         "geometry": mapping(plot)}]}).encode()
    source = open_store(tmp_path / "store")
    plots, (record,), _ = run_checks(body, source, CheckOptions())
    assert record["zones"] == ["17S", "18S"]
    assert record["in_store_fraction"] == pytest.approx(1.0, abs=2e-3)
    assert record["forest_loss_ha"] == pytest.approx(plots[0].area_ha, rel=3e-3)
    assert record["verdict"] == "deforestation_detected"
    assert len(record["cells"]) >= 2
    # The landscape of the store counts each place once, whatever the zone.
    land = store_landscape(source, region, 0.5)
    geodesic = read_plots(json.dumps({"type": "Feature", "properties": {},
                                      "geometry": mapping(region)}),
                          max_plot_ha=10_000)[0].area_ha
    assert land["forest_ref_ha"] == pytest.approx(geodesic, rel=5e-3)


def test_chunking_does_not_change_a_record(maps: tuple[Path, Path]) -> None:
    shapes = [pixel_box(c, r, c + 7.3, r + 5.1) for r in range(0, 190, 13)
              for c in range(0, 190, 17)]
    plots = read_plots(plots_of(*shapes))
    source = pair_of_maps(*maps, SCHEMA)
    one = check_plots(plots, source, CheckOptions(chunk_px=4096, workers=1))
    many = check_plots(plots, source, CheckOptions(chunk_px=16, workers=2))
    for a, b in zip(one, many, strict=True):
        assert a["verdict"] == b["verdict"]
        # Pixel ground areas come from a lattice sampled per window: equal to 1e-5.
        assert a["forest_loss_ha"] == pytest.approx(b["forest_loss_ha"], rel=1e-5)
        assert a["valid_fraction"] == pytest.approx(b["valid_fraction"], rel=1e-5)
