"""The deforestation baseline on the generated landscape, against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from serving.baseline.change import (
    BaselineError,
    Thresholds,
    load_class_maps,
    transition_hectares,
    verdict,
    zone_statistics,
)
from serving.baseline.report import build_report, write_report
from serving.baseline.sampling import draw_sample
from serving.classes import load_classes

SCHEMA = load_classes()


def _maps(landscape: Path) -> tuple[Path, Path]:
    return (landscape / "labels" / "labels_20201215.tif",
            landscape / "labels" / "labels_20240820.tif")


def test_plot_loss_by_driver_equals_the_generator_truth(landscape: Path) -> None:
    maps = load_class_maps(*_maps(landscape))
    plots = gpd.read_file(landscape / "plots.geojson")
    stats = zone_statistics(maps, plots, SCHEMA, Thresholds(), "plot_id")
    assert len(stats) == len(plots)
    for s, (_, truth) in zip(stats, plots.iterrows(), strict=True):
        for key in ("forest_ref_px", "stable_forest_px", "loss_to_cocoa_agroforestry_px",
                    "loss_to_oil_palm_px", "loss_to_degraded_px", "loss_to_other_px"):
            assert s[key] == pytest.approx(truth[key], abs=1e-6), (s["zone_id"], key)
        # ground-area weighted vs pixel counted: equal to within the UTM scale variation
        assert s["valid_fraction"] == pytest.approx(truth["valid_fraction"], abs=1e-5)
    verdicts = {s["verdict"] for s in stats}
    assert verdicts == {"deforestation_detected", "deforestation_free", "insufficient_data"}
    clouded = plots.index[plots["purpose"] == "half_clouded"][0]
    assert stats[clouded]["verdict"] == "insufficient_data"


def test_zones_in_wgs84_give_the_same_hectares(landscape: Path) -> None:
    maps = load_class_maps(*_maps(landscape))
    plots = gpd.read_file(landscape / "plots.geojson")
    utm = zone_statistics(maps, plots, SCHEMA, Thresholds(), "plot_id")
    wgs = zone_statistics(maps, plots.to_crs(4326), SCHEMA, Thresholds(), "plot_id")
    for a, b in zip(utm, wgs, strict=True):
        assert b["zone_ha"] == pytest.approx(a["zone_ha"], rel=5e-3)
        if a["forest_ref_ha"] > 0.5:
            assert b["forest_ref_ha"] == pytest.approx(a["forest_ref_ha"], rel=5e-3)


def test_raster_in_wgs84_gives_ground_areas(landscape: Path, tmp_path: Path) -> None:
    ref, cur = _maps(landscape)
    warped = []
    for path in (ref, cur):
        with rasterio.open(path) as src:
            transform, w, h = calculate_default_transform(
                src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
            out = tmp_path / f"wgs84_{path.name}"
            with rasterio.open(out, "w", driver="GTiff", width=w, height=h, count=1,
                               dtype="uint8", crs="EPSG:4326", transform=transform,
                               nodata=0) as dst:
                dest = np.zeros((h, w), np.uint8)
                reproject(rasterio.band(src, 1), dest, dst_transform=transform,
                          dst_crs="EPSG:4326", resampling=Resampling.nearest)
                dst.write(dest, 1)
            warped.append(out)
    n = SCHEMA.num_classes
    utm = transition_hectares(load_class_maps(ref, cur), n)
    geo = transition_hectares(load_class_maps(*warped), n)
    forest = SCHEMA.code_of("forest")
    assert geo[forest, forest] == pytest.approx(utm[forest, forest], rel=5e-3)
    assert geo[1:, 1:].sum() == pytest.approx(utm[1:, 1:].sum(), rel=5e-3)


def test_misaligned_current_map_is_warped_onto_the_reference(landscape: Path,
                                                              tmp_path: Path) -> None:
    ref, cur = _maps(landscape)
    with rasterio.open(cur) as src:
        profile = src.profile | {"transform": src.transform * src.transform.translation(0, 0)}
        data = src.read(1)[8:, 8:]
        t = src.transform
        shifted = rasterio.Affine(t.a, 0, t.c + 8 * t.a, 0, t.e, t.f + 8 * t.e)
        profile |= {"width": data.shape[1], "height": data.shape[0], "transform": shifted}
    cropped = tmp_path / "cropped.tif"
    with rasterio.open(cropped, "w", **profile) as dst:
        dst.write(data, 1)
    maps = load_class_maps(ref, cropped)
    with rasterio.open(cur) as src:
        full = src.read(1)
    assert np.array_equal(maps.current[8:, 8:], full[8:, 8:])
    assert (maps.current[:8] == 0).all()  # outside the current map: nodata, never "no loss"


def test_report_files_and_lineage(landscape: Path, tmp_path: Path) -> None:
    ref, cur = _maps(landscape)
    sample = draw_sample(cur, tmp_path / "sample.geojson", SCHEMA, users_accuracy=0.85,
                         target_se_overall=0.02)
    points = gpd.read_file(sample)
    assert set(points["map_class"]) <= set(SCHEMA.valid_codes)
    # Label the sample with the truth (here the map itself is the truth: UA = PA = 1).
    points["reference"] = points["map_class"]
    points.to_file(tmp_path / "labelled.geojson", driver="GeoJSON")
    report, maps, zones = build_report(ref, cur, SCHEMA, landscape / "plots.geojson",
                                       reference_sample=tmp_path / "labelled.geojson")
    written = write_report(report, maps, zones, SCHEMA, tmp_path / "report")
    assert {p.name for p in written} == {"report.json", "zones.geojson", "zones.csv",
                                         "map.png"}
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(saved["lineage"]["reference"]["sha256"]) == 64
    assert saved["lineage"]["thresholds"]["min_valid_fraction"] == 0.8
    est = saved["estimates"]
    assert est["overall_accuracy"] == pytest.approx(1.0)
    forest = est["classes"]["forest"]
    mapped_forest = float(np.sum(maps.areas_m2[maps.current == 1]) / 1e4)
    assert forest["area"] == pytest.approx(mapped_forest)
    assert (tmp_path / "report" / "map.png").read_bytes()[:4] == b"\x89PNG"
    # The same sample labelled as the map page saves it (`label`; two left unlabelled).
    paged = points.drop(columns=["reference"]).assign(label=points["map_class"])
    paged["label"] = paged["label"].astype(object)
    paged.loc[paged.index[:2], "label"] = None
    paged.to_file(tmp_path / "paged.geojson", driver="GeoJSON")
    again, _, _ = build_report(ref, cur, SCHEMA, reference_sample=tmp_path / "paged.geojson")
    assert again["estimates"]["sample_points"] == est["sample_points"] - 2
    assert again["estimates"]["overall_accuracy"] == pytest.approx(1.0)


def test_transition_areas_from_a_transition_sample(landscape: Path, tmp_path: Path) -> None:
    ref, cur = _maps(landscape)
    sample = draw_sample(cur, tmp_path / "t.geojson", SCHEMA, users_accuracy=0.9,
                         target_se_overall=0.05, reference_map=ref)
    points = gpd.read_file(sample)
    assert {"map_class_before", "reference_before"} <= set(points.columns)
    points["reference"] = points["map_class"]
    points["reference_before"] = points["map_class_before"]
    points.to_file(tmp_path / "t_labelled.geojson", driver="GeoJSON")
    report, maps, _ = build_report(ref, cur, SCHEMA,
                                   reference_sample=tmp_path / "t_labelled.geojson")
    est = report["estimates"]["classes"]
    n = SCHEMA.num_classes
    mapped = transition_hectares(maps, n)
    forest, palm = SCHEMA.code_of("forest"), SCHEMA.code_of("oil_palm")
    assert est["forest->oil_palm"]["area"] == pytest.approx(mapped[forest, palm])
    assert est["forest->forest"]["area_ci95"] == pytest.approx(0.0, abs=1e-6)


def test_baseline_cli_writes_the_reports(landscape: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from cacaomap.main import main

    ref, cur = _maps(landscape)
    main(["maps", "baseline", "--reference", str(ref), "--current", str(cur),
          "--zones", str(landscape / "plots.geojson"), "--out", str(tmp_path / "r")])
    printed = capsys.readouterr().out
    assert "forest at reference date" in printed and "insufficient_data" in printed
    zones = gpd.read_file(tmp_path / "r" / "zones.geojson")
    assert zones.crs.to_epsg() == 4326
    assert {"verdict", "forest_loss_ha", "valid_fraction"} <= set(zones.columns)


@pytest.mark.parametrize("figure", ["forest_loss_ha", "forest_loss_fraction",
                                    "valid_fraction"])
def test_no_verdict_on_numbers_that_are_not_finite(figure: str) -> None:
    record = {"zone_id": "p7", "forest_loss_ha": 0.0, "forest_loss_fraction": 0.0,
              "valid_fraction": 1.0}
    assert verdict(record, Thresholds()) == "deforestation_free"
    with pytest.raises(BaselineError, match=f"zone p7: {figure} not finite"):
        verdict(record | {figure: float("nan")}, Thresholds())
