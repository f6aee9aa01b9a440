"""k-fold cross-validation: each chip tested once, the recipe run per fold, a table."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest

from cacaomap.main import main
from training.crossval import fold_assignments, mean_row

FILES = [f"chip{k:02d}.tif" for k in range(30)]


def test_each_chip_is_tested_in_exactly_one_fold() -> None:
    folds = fold_assignments(FILES, folds=3, seed=0, val_share=0.1)
    assert len(folds) == 3
    tested = [f for fold in folds for f, split in fold.items() if split == "test"]
    assert sorted(tested) == FILES  # once each
    for fold in folds:
        counts = {s: sum(1 for v in fold.values() if v == s) for s in ("train", "val", "test")}
        assert counts == {"train": 17, "val": 3, "test": 10}
        assert set(fold) == set(FILES)
    assert folds == fold_assignments(FILES, folds=3, seed=0, val_share=0.1)  # seeded
    assert folds != fold_assignments(FILES, folds=3, seed=1, val_share=0.1)


def test_too_few_chips_for_the_folds_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="2 chips are too few for 2 folds with 1 "
                       "validation chip"):
        fold_assignments(FILES[:2], folds=2, seed=0, val_share=0.1)
    assert len(fold_assignments(FILES[:3], folds=3, seed=0, val_share=0.1)) == 3  # 1/1/1
    with pytest.raises(ValueError, match="folds must be at least 2"):
        fold_assignments(FILES, folds=1, seed=0, val_share=0.1)


def test_the_mean_row_averages_the_folds() -> None:
    rows = [{"fold": 0, "accuracy": 0.9, "IoU_forest": 0.8},
            {"fold": 1, "accuracy": 0.7, "IoU_forest": 0.6}]
    mean = mean_row(rows)
    assert mean["accuracy"] == pytest.approx(0.8)
    assert mean["IoU_forest"] == pytest.approx(0.7)
    assert mean["accuracy_std"] == pytest.approx(0.1414, abs=1e-4)


@pytest.mark.slow
def test_crossval_trains_each_fold_and_writes_the_table(
        chips: Path, tmp_path: Path, mlflow_store: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["model", "crossval", "--images", str(chips / "images"), "--labels", str(chips / "labels"),
          "--classes", str(chips / "classes.yaml"), "--label-map", "1=1", "4=2",
          "--folds", "2", "--val-share", "0.15", "--name", "cv", "--out", str(tmp_path),
          "--train-args", shlex.join([
              "--trainer.max_epochs", "1", "--trainer.min_epochs", "1",
              "--data.init_args.length", "8", "--data.init_args.batch_size", "4",
              "--trainer.logger.init_args.experiment_name", "cacaomap-test",
              "--trainer.logger.init_args.artifact_location", (tmp_path / "art").as_uri()])])
    folder = tmp_path / "cv"
    table = json.loads((folder / "crossval.json").read_text())["rows"]
    assert [r["fold"] for r in table] == [0, 1, "mean"]
    for k, row in enumerate(table[:2]):
        assert (row["train_chips"], row["val_chips"], row["test_chips"]) == (3, 1, 4)
        assert 0 <= row["accuracy"] <= 1 and "IoU_forest" in row and "F1_non_forest" in row
        with (folder / f"fold-{k}.csv").open() as handle:
            tested = sorted(r["file"] for r in csv.DictReader(handle) if r["split"] == "test")
        assert len(tested) == 4
        scored = json.loads((folder / "evaluations" / f"fold-{k}" / "metrics.json")
                            .read_text())
        assert scored["pooled"]["accuracy"] == row["accuracy"]
        assert scored["pooled"]["pixels"] == 4 * 96 * 96  # the fold's test chips, whole
    assert (folder / "crossval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table[2]["accuracy"] == pytest.approx(
        (table[0]["accuracy"] + table[1]["accuracy"]) / 2)
    import mlflow

    client = mlflow.MlflowClient(mlflow_store["uri"])
    runs = client.search_runs([client.get_experiment_by_name("cacaomap-test").experiment_id])
    assert sorted(r.data.tags["cacaomap.fold"] for r in runs) == ["0", "1"]
    assert {r.data.tags["cacaomap.crossval"] for r in runs} == {"cv"}
    assert "| mean |" in capsys.readouterr().out
    # Run again: the folds that finished are reused, not trained again.
    main(["model", "crossval", "--images", str(chips / "images"), "--labels", str(chips / "labels"),
          "--folds", "2", "--val-share", "0.15", "--name", "cv", "--out", str(tmp_path),
          "--classes", str(chips / "classes.yaml"), "--label-map", "1=1", "4=2"])
    assert capsys.readouterr().out.count("done before") == 2
    assert json.loads((folder / "crossval.json").read_text())["rows"] == table
