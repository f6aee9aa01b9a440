"""``cacaomap plots check`` and ``store build`` as a user runs them: outputs, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.store_fixtures import PERIODS

pytestmark = pytest.mark.slow


def cacaomap(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command's module (the same entry point) and capture it."""
    return subprocess.run([sys.executable, "-m", "cacaomap", *args], capture_output=True,
                          text=True, timeout=600)


def test_plots_check_writes_geojson_csv_json_and_evidence(built_store: Path,
                                                          region_data: Path,
                                                          tmp_path: Path) -> None:
    plots = region_data / "plots_eudr.geojson"
    out = tmp_path / "report"
    run = cacaomap("plots", "check", str(plots), "--store", str(built_store),
                   "--out", str(out), "--evidence")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "deprecated" not in run.stderr
    given = json.loads(plots.read_text())
    answered = json.loads((out / "plots.geojson").read_text())
    assert len(answered["features"]) == len(given["features"])
    for before, after in zip(given["features"], answered["features"], strict=True):
        record = after["properties"].pop("cacaomap")
        assert after["properties"] == before["properties"]  # producer's, untouched
        assert after["geometry"] == before["geometry"]  # points stay points
        assert record["verdict"] in ("deforestation_free", "deforestation_detected",
                                     "needs_review", "insufficient_data")
        if before["geometry"]["type"] == "Point":
            assert record["geometry_used"] == "circle from Area"
            assert record["area_ha"] == pytest.approx(before["properties"]["Area"], rel=2e-3)
        assert Path(record["evidence"]).is_file()
    rows = list(csv.DictReader((out / "plots.csv").open()))
    assert len(rows) == len(given["features"])
    assert {"producer.ProducerName", "producer.Area", "verdict", "forest_ref_ha"} <= set(rows[0])
    summary = json.loads((out / "plots.json").read_text())
    assert summary["lineage"]["reference_period"] == PERIODS["reference"]
    assert summary["lineage"]["cutoff"] == "2020-12-31"
    picture = Image.open(next((out / "evidence").glob("*.png")))
    assert picture.width > 2 * picture.height  # four panels side by side


@pytest.mark.parametrize(("content", "words"), [
    ("this is not geojson", "not GeoJSON text"),
    ('{"type": "FeatureCollection", "features": []}', "no plots"),
])
def test_a_plots_file_that_is_not_plots_is_one_line_and_writes_nothing(
        built_store: Path, tmp_path: Path, content: str, words: str) -> None:
    bad = tmp_path / "plots.geojson"
    bad.write_text(content)
    out = tmp_path / "report"
    run = cacaomap("plots", "check", str(bad), "--store", str(built_store), "--out", str(out))
    assert run.returncode != 0
    assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["not a store", "no plots file", "no region"])
def test_user_errors_of_both_commands_are_one_line(case: str, region_data: Path,
                                                   built_store: Path, tmp_path: Path) -> None:
    plots = str(region_data / "plots_eudr.geojson")
    if case == "not a store":
        args = ["plots", "check", plots, "--store", str(tmp_path)]
    elif case == "no plots file":
        args = ["plots", "check", str(tmp_path / "none.geojson"), "--store", str(built_store)]
    else:
        args = ["store", "build", "--region", str(tmp_path / "none.geojson"),
                "--reference-period", PERIODS["reference"], "--current-period",
                PERIODS["current"], "--stac", str(region_data / "stac" / "catalog.json"),
                "--out", str(tmp_path / "store")]
    run = cacaomap(*args)
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, (
        run.stderr)


def test_the_old_spellings_still_work_with_one_notice_each(built_store: Path,
                                                         region_data: Path,
                                                         tmp_path: Path) -> None:
    """0.1's ``--evidence true`` and ``--point_area_ha`` work, each with its notice."""
    out = tmp_path / "old"
    run = cacaomap("plots", "check", str(region_data / "plots_eudr.geojson"), "--store",
                   str(built_store), "--out", str(out), "--evidence", "true",
                   "--point_area_ha", "4.0")
    assert run.returncode == 0, run.stderr[-2000:]
    notices = [line for line in run.stderr.splitlines() if "deprecated" in line]
    assert len(notices) == 2, run.stderr
    assert "'--evidence'" in notices[0] and "'--point-area-ha'" in notices[1]
    assert any((out / "evidence").glob("*.png"))
