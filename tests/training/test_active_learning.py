"""Active learning: rounds that add the most uncertain or random labels, measured."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from cacaomap.main import main
from serving.inference.confidence import decode_confidence
from training.active_learning import learning_curve_labels
from training.active_learning_pool import Candidates, most_uncertain


def _candidates(xs: list[float]) -> Candidates:
    n = len(xs)
    zeros = np.zeros(n, np.int64)
    return Candidates(zeros, zeros, np.arange(n), np.asarray(xs, float), np.zeros(n),
                      np.ones(n, np.int64))


def test_uncertainty_picks_the_most_uncertain_apart_and_skips_the_unseen() -> None:
    pool = _candidates([0.0, 1.0, 2.0, 10.0, 20.0, 30.0])
    u = np.array([0.9, 0.8, 0.7, 0.6, np.nan, 0.1])
    assert most_uncertain(u, pool, set(), 3, min_spacing=0.0) == [0, 1, 2]
    # 1 and 2 lie within 5 units of 0: the next picks are further away
    assert most_uncertain(u, pool, set(), 3, min_spacing=5.0) == [0, 3, 5]
    # taken labels are not picked again, and keep their neighbours away
    assert most_uncertain(u, pool, {3}, 2, min_spacing=5.0) == [0, 5]
    assert most_uncertain(u, pool, set(), 6, min_spacing=0.0)[-1] == 4  # NaN last


def test_labels_to_reach_a_target_is_the_first_round_that_reaches_it() -> None:
    rows = [{"strategy": "random", "labels": n, "IoU_macro": v}
            for n, v in ((10, 0.3), (20, 0.5), (30, 0.45), (40, 0.6))]
    assert learning_curve_labels(rows, "random", 0.5) == 20
    assert learning_curve_labels(rows, "random", 0.7) is None


@pytest.mark.slow
def test_active_learning_adds_uncertain_or_random_labels_and_resumes(
        landscape: Path, tmp_path: Path, mlflow_store: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted((landscape / "images").glob("s2l2a_*.tif"))[0]
    truth = sorted((landscape / "labels").glob("labels_*.tif"))[0]
    argv = ["model", "active-learning", "--images", str(image), "--truth", str(truth),
            "--recipe", "tests/conf/active_learning.yaml", "--initial", "6", "--batch", "4",
            "--rounds", "1", "--candidates", "300", "--val-points", "30",
            "--min-spacing", "0", "--name", "al", "--out", str(tmp_path),
            "--train-args", shlex.join(["--trainer.logger.init_args.artifact_location",
                                        (tmp_path / "art").as_uri()])]
    main(argv)
    folder = tmp_path / "al"
    doc = json.loads((folder / "active_learning.json").read_text())
    rows = {(r["strategy"], r["round"]): r for r in doc["rows"]}
    assert sorted(rows) == [("random", 0), ("random", 1), ("uncertainty", 0),
                            ("uncertainty", 1)]
    assert [rows[k]["labels"] for k in sorted(rows)] == [6, 10, 6, 10]
    assert rows["random", 0] | {"strategy": ""} == rows["uncertainty", 0] | {"strategy": ""}
    for row in rows.values():  # scored on the test ground's full truth, served path
        assert 0.0 <= row["IoU_macro"] <= 1.0 and row["test_pixels"] > 1000
    assert (folder / "curve.png").stat().st_size > 0
    assert set(doc["labels_to_reach"]) == {"target_IoU_macro", "uncertainty", "random"}

    # Round 1 of "uncertainty" added the pool's most uncertain candidates under round 0.
    pool = np.load(folder / "candidates.npz")
    stored = np.load(folder / "round-0" / "confidence.npz")[image.name]
    u = 1 - decode_confidence(stored[pool["row"], pool["col"]])
    start = json.loads((folder / "round-0" / "round.json").read_text())["picked"]
    picked = json.loads((folder / "uncertainty" / "round-1" / "round.json").read_text())[
        "picked"]
    added = picked[len(start):]
    assert picked[: len(start)] == start and len(set(added) - set(start)) == 4
    rest = np.setdiff1d(np.arange(len(u)), picked)
    assert np.nanmin(u[added]) >= np.nanmax(u[rest])
    random_added = json.loads((folder / "random" / "round-1" / "round.json").read_text())[
        "picked"][len(start):]
    assert len(set(random_added) - set(start)) == 4
    labels = json.loads((folder / "uncertainty" / "round-1" / "labels.geojson").read_text())
    codes = [f["properties"]["label"] for f in labels["features"]]
    assert sum(c is not None for c in codes) == 10 + 30  # labels + validation points
    assert not list(folder.rglob("*.ckpt"))  # removed once scored

    capsys.readouterr()
    main(argv)  # a rerun trains nothing: every round is done
    out = capsys.readouterr().out
    assert out.count("done before") == 4 and "training on" not in out
    assert json.loads((folder / "active_learning.json").read_text())["rows"] == doc["rows"]
