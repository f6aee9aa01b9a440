"""The model beside the reference layers: the review rule both ways, and layers alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.baseline.change import Thresholds
from serving.plots.check import run_checks
from serving.references.convergence import converge, reference_verdict
from serving.references.layers import ReferenceLayer
from tests.serving.references.test_layers import cells, days, write

T = Thresholds()
LOSS = {"covered_fraction": 1.0, "loss_after_cutoff_ha": 2.0, "loss_straddling_ha": 0.0,
        "first_loss_period": "2022-01-01/2022-12-31"}
NO_LOSS = {"covered_fraction": 1.0, "loss_after_cutoff_ha": 0.0, "loss_straddling_ha": 0.0}
HIGH_ALERT = {"covered_fraction": 1.0, "alert_after_cutoff_ha": 1.5,
              "alert_high_after_cutoff_ha": 1.5, "first_alert_date": "2021-05-02",
              "first_alert_confidence": "high"}
LOW_ALERT = HIGH_ALERT | {"alert_high_after_cutoff_ha": 0.0, "first_alert_confidence": "low"}
OUTSIDE = NO_LOSS | {"covered_fraction": 0.1}


def model(verdict: str, loss: float = 0.0) -> dict[str, Any]:
    return {"plot_id": "p", "verdict": verdict, "forest_loss_ha": loss, "flags": []}


def test_model_free_but_a_layer_sees_loss_needs_review_with_the_reason() -> None:
    record = model("deforestation_free")
    block = converge(record, {"hansen": LOSS, "jrc": {"covered_fraction": 1.0,
                                                      "forest_cutoff_ha": 3.0}}, T)
    assert record["verdict"] == "needs_review" and record["model_verdict"] == (
        "deforestation_free")
    assert not block["agrees"] and "sources_disagree" in record["flags"]
    (reason,) = block["reasons"]
    assert "hansen: 2.00 ha lost after the cutoff (2022-01-01/2022-12-31)" in reason
    assert block["sources_loss"] == 1 and block["sources_forest"] == 1


def test_model_detects_but_every_covering_layer_sees_none_needs_review() -> None:
    record = model("deforestation_detected", 1.2)
    block = converge(record, {"hansen": NO_LOSS, "radd": NO_LOSS | {
        "alert_after_cutoff_ha": 0.0, "alert_high_after_cutoff_ha": 0.0}}, T)
    assert record["verdict"] == "needs_review"
    assert "the model sees 1.20 ha of forest lost but hansen: no loss" in block["reasons"][0]


@pytest.mark.parametrize(("verdict", "layers", "expected"), [
    ("deforestation_detected", {"hansen": LOSS}, "deforestation_detected"),
    ("deforestation_free", {"hansen": NO_LOSS}, "deforestation_free"),
    ("deforestation_free", {"radd": LOW_ALERT}, "deforestation_free"),  # low: no review
    ("deforestation_free", {"radd": HIGH_ALERT}, "needs_review"),
    ("deforestation_free", {"hansen": OUTSIDE | LOSS | {"covered_fraction": 0.1}},
     "deforestation_free"),  # a layer that barely covers the plot takes no part
    ("insufficient_data", {"radd": HIGH_ALERT}, "needs_review"),
    ("deforestation_detected", {"hansen": NO_LOSS, "radd": HIGH_ALERT},
     "deforestation_detected"),  # one layer agrees: no review under "any"
])
def test_the_any_rule(verdict: str, layers: dict[str, dict[str, Any]],
                      expected: str) -> None:
    record = model(verdict, 1.0)
    converge(record, layers, T, "any")
    assert record["verdict"] == expected


def test_majority_and_off_rules() -> None:
    three = {"a": NO_LOSS, "b": NO_LOSS, "c": LOSS}
    record = model("deforestation_free")
    converge(record, three, T, "majority")
    assert record["verdict"] == "deforestation_free"  # one of three: no majority
    record = model("deforestation_free")
    converge(record, {"a": LOSS, "b": LOSS, "c": NO_LOSS}, T, "majority")
    assert record["verdict"] == "needs_review"
    record = model("deforestation_free")
    converge(record, three, T, "off")
    assert record["verdict"] == "deforestation_free"


def test_a_straddling_period_alone_is_reviewed_never_put_on_either_side() -> None:
    straddles = NO_LOSS | {"loss_straddling_ha": 3.0}
    record = model("deforestation_free")
    block = converge(record, {"prodes": straddles}, T)
    assert record["verdict"] == "needs_review"
    assert "prodes: 3.00 ha lost in a period that straddles the cutoff" in block["reasons"][0]
    verdict, why = reference_verdict({"prodes": straddles}, T)
    assert verdict == "needs_review" and "straddles the cutoff" in why[0]


def test_verdicts_from_layers_alone() -> None:
    assert reference_verdict({"hansen": LOSS}, T)[0] == "deforestation_detected"
    assert reference_verdict({"radd": HIGH_ALERT}, T)[0] == "deforestation_detected"
    assert reference_verdict({"radd": LOW_ALERT}, T)[0] == "needs_review"
    assert reference_verdict({"hansen": NO_LOSS}, T)[0] == "deforestation_free"
    verdict, why = reference_verdict({"hansen": OUTSIDE}, T)
    assert verdict == "insufficient_data" and "hansen 10%" in why[0]
    assert reference_verdict({"jrc": {"covered_fraction": 1.0, "forest_cutoff_ha": 2.0}},
                             T)[0] == "insufficient_data"  # a forest map sees no loss


@pytest.fixture()
def layers(tmp_path: Path) -> dict[str, Path]:
    forest = np.ones((100, 100), np.uint8)
    alerts = np.zeros((100, 100), np.uint32)
    alerts[:40, :40] = 30000 + days("2022-02-02")
    return {"jrc_gfc2020": write(tmp_path / "gfc.tif", forest),
            "radd": write(tmp_path / "radd.tif", alerts)}


def plots_body() -> bytes:
    from shapely.geometry import mapping

    shapes = {"cleared": cells(0, 0, 40, 40), "standing": cells(60, 60, 100, 100),
              "away": cells(300, 300, 340, 340)}
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"plot_id": k}, "geometry": mapping(g)}
        for k, g in shapes.items()]}).encode()


def test_plots_checked_against_layers_alone(layers: dict[str, Path]) -> None:
    opened = [ReferenceLayer.open(spec, path) for spec, path in layers.items()]
    _, records, summary = run_checks(plots_body(), None, references=opened)
    verdicts = {r["plot_id"]: r["verdict"] for r in records}
    assert verdicts == {"cleared": "deforestation_detected",
                        "standing": "deforestation_free", "away": "insufficient_data"}
    cleared = records[0]
    assert cleared["references"]["radd"]["first_alert_date"] == "2022-02-02"
    assert cleared["references"]["jrc_gfc2020"]["forest_cutoff_fraction"] == (
        pytest.approx(1.0, abs=1e-3))
    assert [x["spec"] for x in summary["lineage"]["references"]] == ["jrc_gfc2020", "radd"]
    assert summary["lineage"]["source"] == "reference layers only"


def test_the_command_checks_plots_against_layers_alone(layers: dict[str, Path],
                                                       tmp_path: Path) -> None:
    plots = tmp_path / "plots.geojson"
    plots.write_bytes(plots_body())
    run = subprocess.run([sys.executable, "-m", "cacaomap", "plots", "check", str(plots),
                          "--layers", *(f"{k}={v}" for k, v in layers.items()),
                          "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads((tmp_path / "out" / "plots.json").read_text())
    assert answer["verdicts"] == {"deforestation_detected": 1, "deforestation_free": 1,
                                  "insufficient_data": 1}
    bad = subprocess.run([sys.executable, "-m", "cacaomap", "plots", "check", str(plots),
                          "--layers", f"hansen_gfc={layers['radd']}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("cacaomap plots check: layer hansen_gfc reads")
