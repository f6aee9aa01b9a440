"""A store built with both sensors: radar stacked per cell and period, plots told which."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.inference.scene import classify_scene
from serving.inference.tiles import TileClassifier
from serving.plots.check import run_checks
from serving.radar.statistics import RADAR_BANDS, RADAR_COUNT_BAND
from serving.store.reader import open_store
from tests.store_fixtures import build_radar_store
from training.synthetic.spectra import S2_BANDS


def _cells(store: Path) -> list[Path]:
    return sorted(store.glob("cells/*/*/*/done.json"))


def test_each_cell_period_stacks_that_periods_radar_and_records_it(
        radar_store: tuple[Path, Path]) -> None:
    store, _ = radar_store
    meta = json.loads((store / "store.json").read_text())
    assert meta["radar"]["units_read"] == ["linear"]
    for marker in _cells(store):
        done = json.loads(marker.read_text())
        year = done["period"][:4]
        assert done["radar_items"] and all(year in name for name in done["radar_items"])
        with rasterio.open(marker.parent / "composite.tif") as src:
            names = src.descriptions
            assert names[-len(RADAR_BANDS) - 1:] == (*RADAR_BANDS, RADAR_COUNT_BAND)
            radar = src.read(src.count) > 0
            optical = src.read(names.index("clear_count") + 1) > 0
            assert radar[optical].all()  # wherever optical saw, radar did (clouds or not)
        assert not list(marker.parent.glob(".optical*"))  # no leftovers
    # the store's STAC catalogue names each cell-period's radar acquisitions
    import pystac

    catalog = pystac.Catalog.from_file(str(store / "catalog.json"))
    found = list(catalog.get_items(recursive=True))
    assert found and all(i.properties["cacaomap:radar_items"] for i in found)


def test_radar_only_pixels_are_classified_and_plots_say_how_much_rests_on_radar(
        radar_store: tuple[Path, Path], region_data: Path) -> None:
    store, _ = radar_store
    radar_only = 0
    for marker in _cells(store):
        with rasterio.open(marker.parent / "composite.tif") as src, \
                rasterio.open(marker.parent / "classes.tif") as classes:
            names = list(src.descriptions)
            unseen_optically = ((src.read(names.index("clear_count") + 1) == 0)
                                & (src.read(names.index(RADAR_COUNT_BAND) + 1) > 0))
            codes = classes.read(1)
        radar_only += int(unseen_optically.sum())
        assert (codes[unseen_optically] != 0).all()  # classified, from radar alone
    assert radar_only > 0
    _, records, _ = run_checks((region_data / "plots_eudr.geojson").read_bytes(),
                               open_store(store))
    checked = [r for r in records if r["verdict"] != "error"]
    assert checked and all("radar_only_fraction" in r for r in checked)
    on_radar = [r for r in checked if r["radar_only_fraction"] > 0.5]
    assert on_radar, "the persistent clouds leave plots that only radar saw"
    for record in on_radar:
        assert "classified_from_radar" in record["flags"]
        assert record["verdict"] != "insufficient_data"
        assert record["seen_optically_fraction"] < 0.5


def test_an_optical_model_reads_a_stacked_composite_as_its_optical_one(
        radar_store: tuple[Path, Path], store_model: Path, tmp_path: Path) -> None:
    store, _ = radar_store
    composite = sorted(store.glob("cells/*/current/*/composite.tif"))[0]
    optical = tmp_path / "optical.tif"
    with rasterio.open(composite) as src:
        names = list(src.descriptions)
        keep = [names.index(b) + 1 for b in (*S2_BANDS, "clear_count")]
        profile = src.profile | {"count": len(keep), "driver": "GTiff"}
        with rasterio.open(optical, "w", **profile) as dst:
            dst.write(src.read(keep))
            dst.descriptions = tuple(names[i - 1] for i in keep)
    classifier = TileClassifier.from_model_dir(store_model)
    with rasterio.open(composite) as stacked, rasterio.open(optical) as alone:
        classify_scene(stacked, tmp_path / "from_stacked.tif", classifier)
        classify_scene(alone, tmp_path / "from_optical.tif", classifier)
    with rasterio.open(tmp_path / "from_stacked.tif") as a, \
            rasterio.open(tmp_path / "from_optical.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_radar_only_model_builds_a_store_that_keeps_the_optical_evidence(
        region_data: Path, tmp_path: Path) -> None:
    report, _ = build_radar_store(region_data, tmp_path, list(RADAR_BANDS))
    assert report.done
    for marker in _cells(tmp_path / "store"):
        with rasterio.open(marker.parent / "composite.tif") as src, \
                rasterio.open(marker.parent / "classes.tif") as classes:
            names = list(src.descriptions)
            # true colour and the clear count stay beside the radar the model reads
            assert names[:4] == ["B02", "B03", "B04", "clear_count"]
            assert names[4:] == [*RADAR_BANDS, RADAR_COUNT_BAND]
            seen_by_radar = src.read(names.index(RADAR_COUNT_BAND) + 1) > 0
            codes = classes.read(1)
        assert seen_by_radar.any()
        assert (codes[seen_by_radar] != 0).all()
    _, records, _ = run_checks((region_data / "plots_eudr.geojson").read_bytes(),
                               open_store(tmp_path / "store"))
    assert [r for r in records if r["verdict"] != "error"]


def test_each_class_map_has_its_sensors_map_beside_it(radar_store: tuple[Path, Path],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from cacaomap.main import main
    from serving.radar.sensors_map import SENSOR_CODES

    store, model = radar_store
    radar_alone = 0
    for marker in _cells(store):
        folder = marker.parent
        with rasterio.open(folder / "composite.tif") as src, \
                rasterio.open(folder / "classes.tif") as classes, \
                rasterio.open(folder / "sensors.tif") as sensors:
            names = list(src.descriptions)
            clear = src.read(names.index("clear_count") + 1)
            radar = src.read(names.index(RADAR_COUNT_BAND) + 1)
            codes, which = classes.read(1), sensors.read(1)
            assert "2 = radar alone" in sensors.tags()["SENSOR_CODES"]
        np.testing.assert_array_equal(which == 2, (codes != 0) & (clear == 0) & (radar > 0))
        np.testing.assert_array_equal(which == 1, (codes != 0) & (clear > 0))
        np.testing.assert_array_equal(which == 0, codes == 0)
        done = json.loads(marker.read_text())
        assert set(done["sensors"]) == set(SENSOR_CODES.values())
        radar_alone += int((which == 2).sum())
    assert radar_alone > 0
    import pystac

    items = list(pystac.Catalog.from_file(str(store / "catalog.json")).get_items(
        recursive=True))
    assert all("sensors" in i.assets for i in items)
    # the command line writes the same sidecar beside a stacked scene's class map
    scene = next(iter(sorted(store.glob("cells/*/current/*/composite.tif"))))
    main(["maps", "classify", str(scene), "--model", str(model),
          "--out", str(tmp_path / "x.classes.tif")])
    assert "x.sensors.tif" in capsys.readouterr().out
    with rasterio.open(tmp_path / "x.sensors.tif") as cli, \
            rasterio.open(scene.parent / "sensors.tif") as built:
        np.testing.assert_array_equal(cli.read(1), built.read(1))
