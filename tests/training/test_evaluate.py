"""``cacaomap model evaluate``: the trainer's table from a checkpoint, chips served."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from cacaomap.main import main
from training.export.exporter import export_model

pytestmark = pytest.mark.slow

SCENE = "s2l2a_20240820.tif"
LABELS = "labels_20240820.tif"


def test_a_checkpoint_reproduces_the_trainers_test_table(
        trained: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    main(["model", "evaluate", "--checkpoint", trained["ckpt"], "--out", str(tmp_path),
          "--name", "ckpt"])
    document = json.loads((tmp_path / "ckpt" / "metrics.json").read_text())
    client = mlflow.MlflowClient(trained["uri"])
    logged = client.get_run(trained["run_id"]).data.metrics
    compared = 0
    for metric, row in document["pooled"]["metrics"].items():
        for name, value in row.items():
            key = f"test_{metric}_{name}"
            if value is None:
                assert key not in logged or math.isnan(logged[key])
                continue
            assert value == pytest.approx(logged[key], abs=1e-6), key
            compared += 1
    assert compared >= 4 * 3  # IoU/F1/precision/recall of 2+ classes and macro

    evaluation = client.get_experiment_by_name("cacaomap-evaluation")
    (run,) = client.search_runs([evaluation.experiment_id])
    assert run.data.tags["cacaomap.model_run_id"] == trained["run_id"]
    assert run.data.metrics["eval_IoU_macro"] == pytest.approx(logged["test_IoU_macro"],
                                                               abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/confusion.png",
            "evaluation/per_class.csv"} <= artifacts


@pytest.fixture(scope="module")
def exported(trained: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    return export_model(trained["ckpt"], models_dir=models, tile_size=64, register=False)


def _cut_chips(landscape: Path, root: Path, size: int = 128) -> list[Path]:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    chips = []
    for k, (row, col) in enumerate([(0, 0), (0, 128), (128, 0), (128, 128)]):
        window = Window(col, row, size, size)
        for src_path, folder in ((landscape / "images" / SCENE, "images"),
                                 (landscape / "labels" / LABELS, "labels")):
            with rasterio.open(src_path) as src:
                profile = {**src.profile, "width": size, "height": size,
                           "transform": src.window_transform(window)}
                profile.pop("blockxsize", None), profile.pop("blockysize", None)
                profile["tiled"] = False
                data = src.read(window=window)
            with rasterio.open(root / folder / f"chip_{k}.tif", "w", **profile) as dst:
                dst.write(data)
        chips.append(root / "images" / f"chip_{k}.tif")
    return chips


def test_a_folder_of_chips_through_the_served_path(
        exported: Path, trained: dict[str, str], landscape: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    chips = _cut_chips(landscape, tmp_path / "chips")
    main(["model", "evaluate", "--images", str(tmp_path / "chips" / "images"),
          "--labels", str(tmp_path / "chips" / "labels"), "--model", str(exported),
          "--out", str(tmp_path / "out"), "--name", "chips", "--no-mlflow-log"])
    printed = capsys.readouterr().out
    assert "Per image" in printed and "chip_3.tif" in printed and "pooled accuracy" in printed
    folder = tmp_path / "out" / "chips"
    document = json.loads((folder / "metrics.json").read_text())
    assert sorted(document["per_image"]) == [c.name for c in chips]
    pooled = np.asarray(document["pooled"]["confusion"])
    assert (pooled == sum(np.asarray(d["confusion"])
                          for d in document["per_image"].values())).all()

    # the same figure by another road: `cacaomap maps classify` each chip, compare by hand
    correct = scored = 0
    for chip in chips:
        out = tmp_path / f"{chip.stem}_classes.tif"
        main(["maps", "classify", str(chip), "--out", str(out), "--model", str(exported)])
        with rasterio.open(out) as a, rasterio.open(tmp_path / "chips" / "labels" /
                                                    chip.name) as b:
            predicted, truth = a.read(1), b.read(1)
        keep = (truth != 0) & (predicted != 0)
        correct += int((predicted[keep] == truth[keep]).sum())
        scored += int(keep.sum())
    assert document["pooled"]["pixels"] == scored
    assert document["pooled"]["accuracy"] == pytest.approx(correct / scored, abs=1e-12)
    # Mean uncertainty (1 - the confidence COG) over the pixels it got right and wrong
    # (this one-epoch model is wrong on most pixels: which is higher is not asserted).
    u = document["uncertainty"]
    assert u["right_pixels"] == correct and u["right_pixels"] + u["wrong_pixels"] == scored
    assert 0 <= u["right"] <= 1 and 0 <= u["wrong"] <= 1
    assert f"mean uncertainty (1 - confidence): {u['right']:.4f} where the model is right" \
        in printed
    assert (folder / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    # a checkpoint with images is exported on the fly and scored the same way
    main(["model", "evaluate", "--images", str(tmp_path / "chips" / "images"),
          "--labels", str(tmp_path / "chips" / "labels"), "--checkpoint",
          str(trained["ckpt"]), "--out", str(tmp_path / "out"), "--name", "from-ckpt",
          "--no-mlflow-log"])
    again = json.loads((tmp_path / "out" / "from-ckpt" / "metrics.json").read_text())
    assert again["pooled"]["pixels"] == scored
    assert again["pooled"]["accuracy"] == pytest.approx(correct / scored, abs=0.02)
    rows = (folder / "per_class.csv").read_text().splitlines()
    assert rows[0].startswith("class,IoU,F1,precision,recall,support")
    assert rows[-1].startswith("macro,")


def test_points_on_a_scene_and_bad_labels(
        exported: Path, landscape: Path, tmp_path: Path) -> None:
    import geopandas as gpd
    from rasterio.transform import xy

    with rasterio.open(landscape / "labels" / LABELS) as src:
        truth, transform, crs = src.read(1), src.transform, src.crs
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(truth)
    pick = rng.choice(rows.size, 150, replace=False)
    xs, ys = xy(transform, rows[pick], cols[pick])
    points = gpd.GeoDataFrame({"code": truth[rows[pick], cols[pick]].astype(int) + 10},
                              geometry=gpd.points_from_xy(xs, ys), crs=crs)
    points.to_file(tmp_path / "points.gpkg")
    label_map = [f"{int(c) + 10}={int(c)}" for c in np.unique(truth) if c]
    main(["model", "evaluate", "--images", str(landscape / "images" / SCENE),
          "--labels", str(tmp_path / "points.gpkg"), "--label-field", "code",
          "--label-map", *label_map, "--model", str(exported),
          "--out", str(tmp_path / "out"), "--name", "points", "--no-mlflow-log"])
    document = json.loads((tmp_path / "out" / "points" / "metrics.json").read_text())
    assert document["pooled"]["pixels"] + document["unobserved"][SCENE] == 150

    with pytest.raises(SystemExit, match="no labelled, observed pixel to score"):
        main(["model", "evaluate", "--images", str(landscape / "images" / SCENE),
              "--labels", str(tmp_path / "points.gpkg"), "--label-field", "code",
              "--label-map", "99=1", "--model", str(exported), "--out", str(tmp_path / "out"),
              "--no-mlflow-log"])
    with pytest.raises(SystemExit, match="labels hold codes outside"):
        main(["model", "evaluate", "--images", str(landscape / "images" / SCENE),
              "--labels", str(tmp_path / "points.gpkg"), "--label-field", "code",
              "--label-map", "11=99", "--model", str(exported),
              "--out", str(tmp_path / "out"), "--no-mlflow-log"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["points"]


def test_within_split_scores_only_the_checkpoints_test_blocks(
        trained: dict[str, str], landscape: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.inference.evaluation import pixels_within
    from training.evaluate import split_area
    from training.export.exporter import load_checkpoint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    main(["model", "evaluate", "--images", str(landscape / "images" / SCENE),
          "--labels", str(landscape / "labels" / LABELS), "--checkpoint", trained["ckpt"],
          "--within-split", "test", "--out", str(tmp_path), "--name", "test-blocks",
          "--no-mlflow-log"])
    document = json.loads((tmp_path / "test-blocks" / "metrics.json").read_text())
    with rasterio.open(landscape / "labels" / LABELS) as src:
        truth, profile = src.read(1), src.profile
    area = split_area(load_checkpoint(trained["ckpt"]).data_hparams, "test")
    inside = pixels_within(area, profile)
    assert 0 < inside.sum() < 0.5 * inside.size  # the test blocks, not the scene
    scored = document["pooled"]["pixels"] + document["unobserved"][SCENE]
    assert scored == int(((truth != 0) & inside).sum())
    u = document["uncertainty"]
    assert u["right_pixels"] + u["wrong_pixels"] == document["pooled"]["pixels"]
    assert document["within_split"] == "test"
    with pytest.raises(SystemExit, match="--within-split needs --checkpoint"):
        main(["model", "evaluate", "--images", str(landscape / "images" / SCENE),
              "--labels", str(landscape / "labels" / LABELS), "--within-split", "test",
              "--out", str(tmp_path), "--no-mlflow-log"])
