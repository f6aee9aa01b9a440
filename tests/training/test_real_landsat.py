"""Retraining on real Landsat-8 with point labels, 6 bands and a 4-code schema."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from torchgeo.samplers import GridGeoSampler

from cacaomap.main import main
from training.data.datamodule import LandCoverDataModule

pytestmark = pytest.mark.slow
DATA = Path("tests/data/rondonia")


def _datamodule() -> LandCoverDataModule:
    return LandCoverDataModule(
        images=str(DATA / "LC08_232066_20190727.tif"), labels=str(DATA / "endmembers.shp"),
        label_kind="vector", label_map={1: 3, 2: 3, 3: 1, 4: 2},
        classes=str(DATA / "classes.yaml"),
        all_bands=["B2", "B3", "B4", "B5", "B6", "B7"], image_glob="LC08_*.tif",
        label_glob="endmembers.shp", filename_regex=".*", image_nodata=-9999,
        block_size=48, patch_size=48,
    )


def test_points_rasterise_to_mapped_codes() -> None:
    dataset = _datamodule().build_dataset()
    assert dataset.res == (30.0, 30.0)
    codes: set[int] = set()
    labelled = 0
    for query in GridGeoSampler(dataset, 48, 48):
        sample = dataset[query]
        assert sample["image"].shape[0] == 6
        mask = sample["mask"]
        codes |= set(mask.unique().tolist())
        labelled += int((mask > 0).sum())
    # The clip holds forest (source 3) and water/bare (sources 1, 2) points, remapped.
    assert codes <= {0, 1, 2, 3} and {1, 3} <= codes
    assert labelled >= 15  # the points that fall inside this clip


def test_train_and_evaluate_on_real_landsat(mlflow_store: dict[str, str]) -> None:
    main([
        "train", "fit", "--config", "tests/conf/rondonia.yaml",
        "--trainer.default_root_dir", mlflow_store["root"],
        "--trainer.logger.init_args.artifact_location", mlflow_store["artifacts"],
    ])
    client = mlflow.MlflowClient(mlflow_store["uri"])
    exp = client.get_experiment_by_name("cacaomap-rondonia")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["lineage.bands"] == "B2,B3,B4,B5,B6,B7"
    assert run.data.params["lineage.classes"] == "nodata,forest,degraded,other"
    assert run.data.params["in_channels"] == "6" and run.data.params["num_classes"] == "4"
    assert "test_F1_macro" in run.data.metrics
    stats = mlflow.artifacts.load_dict(
        f"{mlflow_store['artifacts']}/{run.info.run_id}/artifacts/normalization.json"
    )
    # int16 reflectance x 10000 with -9999 nodata excluded: plausible band means.
    assert all(0 < m < 6000 for m in stats["mean"])
    ckpt = next(Path(mlflow_store["root"]).rglob("*.ckpt"))
    hparams = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert [c["name"] for c in hparams["class_schema"]["classes"]] == [
        "nodata", "forest", "degraded", "other"]

    # Parity of the exported model on real Landsat tiles (int16, nodata -9999).
    from serving.inference.contract import load_model_dir
    from training.export.exporter import export_model

    folder = export_model(ckpt, name="rondonia", models_dir=Path(mlflow_store["root"]) / "m",
                          tile_size=96, overlap=16, parity_images=DATA / "LC08_232066_20190727.tif",
                          register=False)
    _, contract = load_model_dir(folder)
    assert contract.input_dtype == "int16" and contract.image_nodata == -9999
    assert contract.bands == ["B2", "B3", "B4", "B5", "B6", "B7"]
    # This under-trained model's logits reach ~2000; fp32 differences scale with them.
    assert (contract.parity["real_max_abs_logit_diff"] <= 1e-3
            or contract.parity["real_rel_logit_diff"] <= 1e-5)
    assert contract.parity["real_argmax_agreement"] >= 0.999
