"""Checkpoint → ONNX + contract, parity-checked, registered, written atomically.

Order of work, so that nothing half-made is ever visible: export into a temporary
folder beside the destination, embed the contract, measure ONNX Runtime vs PyTorch
parity on random and real tiles (refuse if it fails), register in MLflow (model +
alias) and the BentoML model store, and only then rename the folder into place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import rasterio
import torch
from rasterio.windows import Window

from serving.contract import (
    CARD_FILE,
    CONTRACT_FILE,
    METADATA_KEY,
    ONNX_FILE,
    ModelContract,
    sha256_file,
)
from serving.tiles import TileClassifier
from training.task import LandCoverSegmentationTask
from training.tracking import ensure_experiment, git_sha, resolve_tracking_uri

log = logging.getLogger(__name__)

#: Pinned ONNX opset of exported models.
OPSET = 18
#: Parity thresholds (fp32) on real tiles: max |Δlogit| ≤ 1e-3, or — for models whose
#: logits run into the hundreds, where fp32 accumulation error grows with magnitude —
#: max |Δlogit| / max |logit| ≤ 1e-5 (~80 fp32 ulps); and argmax agreement ≥ 99.9%.
MAX_ABS_LOGIT_DIFF = 1e-3
MAX_REL_LOGIT_DIFF = 1e-5
MIN_ARGMAX_AGREEMENT = 0.999


#: Run artifact folder holding the exported model folders, one per version.
MODEL_FILES_PATH = "cacaomap-model"


class ExportError(RuntimeError):
    """An export that was refused (parity, missing inputs); nothing was written."""


@dataclass
class LoadedCheckpoint:
    """A task restored from a checkpoint with what the contract needs."""

    task: LandCoverSegmentationTask
    statistics: dict[str, Any]
    data_hparams: dict[str, Any]
    path: Path


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Restore the task (eval mode, CPU) and the data statistics it was trained with."""
    raw = torch.load(path, map_location="cpu", weights_only=False)
    stats_blob = raw.get("LandCoverDataModule", {}).get("statistics")
    if stats_blob is None:
        raise ExportError(f"{path} has no normalisation statistics (LandCoverDataModule)")
    task = LandCoverSegmentationTask.load_from_checkpoint(path, map_location="cpu")
    task.eval()
    return LoadedCheckpoint(
        task=task, statistics=json.loads(stats_blob),
        data_hparams=dict(raw.get("datamodule_hyper_parameters", {})), path=Path(path),
    )


def checkpoint_from_run(run_id: str, tracking_uri: str | None = None) -> Path:
    """Download the best checkpoint logged by a training run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri or resolve_tracking_uri())
    dirs = [a.path for a in client.list_artifacts(run_id) if a.is_dir]
    candidates = [d for d in dirs if d.startswith(("best", "epoch"))] or [
        d for d in dirs if d == "last"
    ]
    if not candidates:
        raise ExportError(f"run {run_id} logged no checkpoint")
    local = Path(client.download_artifacts(run_id, candidates[-1]))
    return next(local.rglob("*.ckpt"))


def resolve_model_uri(uri: str, dest: str | Path = "models") -> Path:
    """Download ``models:/<name>@<alias>`` (or ``models:/<name>/<version>``) to a folder.

    The files are the exact ones exported (hash-checked by ``load_model_dir``), placed
    at ``dest/<name>/<version>/``.
    """
    import mlflow

    from serving.contract import load_model_dir

    if not uri.startswith("models:/"):
        raise ExportError(f"not a registered-model URI: {uri!r}")
    ref = uri.removeprefix("models:/")
    client = mlflow.MlflowClient(resolve_tracking_uri())
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = ref.split("/", 1)
        version = client.get_model_version(name, number)
    folder = version.tags.get("cacaomap_version")
    if not folder or not version.run_id:
        raise ExportError(f"{uri} was not registered by cacaomap export")
    target = Path(dest) / name / folder
    if not (target / ONNX_FILE).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=f"{MODEL_FILES_PATH}/{folder}",
                dst_path=str(tmp), tracking_uri=resolve_tracking_uri())
            os.replace(local, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    load_model_dir(target)
    return target


def run_of_model_uri(uri: str) -> str:
    """The training run behind a registered model version (``models:/name@alias``)."""
    import mlflow

    ref = uri.removeprefix("models:/")
    client = mlflow.MlflowClient(resolve_tracking_uri())
    name, alias = ref.split("@", 1)
    return str(client.get_model_version_by_alias(name, alias).run_id)


def test_metrics_of_run(run_id: str) -> dict[str, float]:
    """The test metrics a training run logged (they go into the contract)."""
    import mlflow

    run = mlflow.MlflowClient(resolve_tracking_uri()).get_run(run_id)
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}


def real_tiles(
    images: str | Path, dtype: str, bands: int, tile: int, count: int, seed: int = 0
) -> np.ndarray:
    """Read ``count`` random tiles from the imagery the model was trained on."""
    root = Path(images)
    files = sorted(root.rglob("*.tif")) if root.is_dir() else [root]
    if not files:
        raise ExportError(f"no imagery under {images} for the parity check")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        with rasterio.open(files[i % len(files)]) as src:
            size = min(tile, src.width, src.height)
            row = int(rng.integers(0, src.height - size + 1))
            col = int(rng.integers(0, src.width - size + 1))
            data = src.read(window=Window(col, row, size, size), boundless=False)
        if data.shape[0] != bands:
            raise ExportError(f"{files[0]} has {data.shape[0]} bands, model {bands}")
        padded = np.zeros((bands, tile, tile), data.dtype)
        padded[:, :size, :size] = data
        out.append(padded)
    return np.stack(out).astype(dtype)


def measure_parity(
    task: LandCoverSegmentationTask, classifier: TileClassifier, tiles: np.ndarray
) -> dict[str, float]:
    """Max |Δlogit| and argmax agreement of ONNX Runtime vs PyTorch on the same input."""
    contract = classifier.contract
    mean = np.asarray(contract.mean, np.float32)[None, :, None, None]
    std = np.asarray(contract.std, np.float32)[None, :, None, None]
    x = ((tiles.astype(np.float32) - mean) / std).astype(np.float32)
    valid = classifier.valid_mask(tiles)
    x = np.where(valid[:, None], x, 0).astype(np.float32)
    with torch.no_grad():
        ref = task(torch.from_numpy(x)).numpy()
    (got,) = classifier.session.run(None, {contract.input_name: x})
    diff = float(np.abs(ref - got).max())
    scale = float(np.abs(ref).max())
    agree = float((ref.argmax(1) == got.argmax(1))[valid].mean()) if valid.any() else 1.0
    return {"max_abs_logit_diff": diff, "max_abs_logit": scale,
            "rel_logit_diff": diff / max(scale, 1e-12), "argmax_agreement": agree}


def parity_ok(parity: dict[str, float]) -> bool:
    """The export gate (see MAX_ABS_LOGIT_DIFF)."""
    close = (parity["max_abs_logit_diff"] <= MAX_ABS_LOGIT_DIFF
             or parity["rel_logit_diff"] <= MAX_REL_LOGIT_DIFF)
    return close and parity["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT


def _export_onnx(task: LandCoverSegmentationTask, path: Path, bands: int, tile: int) -> None:
    example = torch.zeros(2, bands, tile, tile)
    torch.onnx.export(
        task.model, (example,), str(path), input_names=["image"],
        output_names=["logits"], opset_version=OPSET, dynamo=False,
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                      "logits": {0: "batch", 2: "height", 3: "width"}},
    )


def sweep_stale_exports(model_root: Path) -> list[Path]:
    """Remove ``.export-<pid>-*`` folders whose export process is gone (killed exports).

    They were never visible as models (only ``v<N>`` folders are); this reclaims the disk.
    """
    import psutil

    removed = []
    for folder in model_root.glob(".export-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _next_version(model_root: Path) -> str:
    versions = [int(p.name[1:]) for p in model_root.glob("v*") if p.name[1:].isdigit()]
    return f"v{max(versions, default=0) + 1}"


def export_model(
    checkpoint: str | Path,
    name: str = "cacaomap",
    models_dir: str | Path = "models",
    tile_size: int = 256,
    overlap: int = 32,
    parity_images: str | Path | None = None,
    parity_tiles: int = 8,
    mlflow_run_id: str | None = None,
    register: bool = True,
    alias: str = "candidate",
    test_metrics: dict[str, float] | None = None,
) -> Path:
    """Export a checkpoint to ``models/<name>/<version>/`` (see the module docstring).

    Returns:
        The model folder.

    Raises:
        ExportError: If parity fails or an input is missing; nothing is left behind.
    """
    loaded = load_checkpoint(checkpoint)
    task, stats = loaded.task, loaded.statistics
    hp = task.hparams
    bands = list(hp["band_names"] or stats["bands"])
    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale_exports(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".export-{os.getpid()}-", dir=root))
    try:
        version = _next_version(root)
        onnx_path = tmp / ONNX_FILE
        _export_onnx(task, onnx_path, len(bands), tile_size)
        contract = ModelContract(
            name=name, version=version, classes=dict(hp["class_schema"]), bands=bands,
            input_dtype=stats.get("input_dtype") or "uint16", mean=stats["mean"],
            std=stats["std"], image_nodata=stats.get("image_nodata"),
            pixel_size_m=stats.get("pixel_size_m"),
            reflectance_scale=float(stats.get("reflectance_scale") or 10000.0),
            tile_size=tile_size, overlap=overlap, opset=OPSET,
            mlflow_run_id=mlflow_run_id, git_sha=git_sha(),
            dataset_fingerprint=stats.get("dataset_fingerprint"),
            test_metrics=dict(test_metrics or {}),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        # Parity before anything is registered.
        classifier = TileClassifier(onnx_path, contract)
        random = np.random.default_rng(0).normal(
            np.asarray(contract.mean)[None, :, None, None],
            np.asarray(contract.std)[None, :, None, None],
            (parity_tiles, len(bands), tile_size, tile_size),
        ).clip(1).astype(contract.input_dtype)
        images = parity_images or loaded.data_hparams.get("images")
        if images is None:
            raise ExportError("no imagery for the parity check: pass parity_images")
        real = real_tiles(images, contract.input_dtype, len(bands), tile_size, parity_tiles)
        random_parity = measure_parity(task, classifier, random)
        real_parity = measure_parity(task, classifier, real)
        contract.parity = {f"random_{k}": v for k, v in random_parity.items()} | {
            f"real_{k}": v for k, v in real_parity.items()}
        if not (parity_ok(real_parity) and parity_ok(random_parity)):
            raise ExportError(f"ONNX Runtime vs PyTorch parity failed: {contract.parity}")
        package_model(tmp, contract)
        if register:
            register_model(tmp, contract, alias)
        final = root / version
        os.replace(tmp, final)
        log.info("exported %s", final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def package_model(folder: Path, contract: ModelContract) -> None:
    """Embed the contract in ``folder/model.onnx``, hash it, write contract and card.

    The embedded copy has no ``onnx_sha256`` (a file cannot hold its own hash); the
    sidecar ``contract.json`` has it.
    """
    onnx_path = folder / ONNX_FILE
    contract.onnx_sha256 = ""
    model = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    onnx.save(model, str(onnx_path))
    contract.onnx_sha256 = sha256_file(onnx_path)
    (folder / CONTRACT_FILE).write_text(contract.to_json(), encoding="utf-8")
    (folder / CARD_FILE).write_text(model_card(contract), encoding="utf-8")


def register_model(model_dir: Path, contract: ModelContract, alias: str) -> None:
    """Log the ONNX model to MLflow (registered, with an alias) and save it to BentoML."""
    import bentoml
    import mlflow

    experiment = ensure_experiment("cacaomap-exports")
    client = mlflow.MlflowClient()
    onnx_model = onnx.load(str(model_dir / ONNX_FILE))
    if contract.mlflow_run_id:
        run = mlflow.start_run(run_id=contract.mlflow_run_id)
    else:
        run = mlflow.start_run(
            experiment_id=experiment, run_name=f"export-{contract.name}-{contract.version}"
        )
    with run:
        info = mlflow.onnx.log_model(
            onnx_model, name=f"onnx-{contract.version}",
            registered_model_name=contract.name,
        )
        mlflow.log_dict(contract.to_dict(), f"onnx-{contract.version}/{CONTRACT_FILE}")
        # The exact files (contract sidecar and card included), for models:/ resolution.
        mlflow.log_artifacts(str(model_dir), f"{MODEL_FILES_PATH}/{contract.version}")
    registered = info.registered_model_version
    client.set_model_version_tag(contract.name, registered, "cacaomap_version",
                                 contract.version)
    client.set_model_version_tag(contract.name, registered, "onnx_sha256",
                                 contract.onnx_sha256)
    client.set_registered_model_alias(contract.name, alias, registered)
    with bentoml.models.create(
        contract.name,
        labels={"version": contract.version, "alias": alias},
        metadata={"onnx_sha256": contract.onnx_sha256, "mlflow_version": registered},
    ) as bento_model:
        for f in (ONNX_FILE, CONTRACT_FILE, CARD_FILE):
            shutil.copy2(model_dir / f, Path(bento_model.path) / f)


def model_card(contract: ModelContract) -> str:
    """A short human-readable card written beside the model."""
    classes = "\n".join(
        f"| {c['code']} | {c['name']} | {c['colour']} |" for c in contract.classes["classes"]
    )
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(contract.test_metrics.items())
                        ) or "| (none recorded) | |"
    return f"""# Model card: {contract.name} {contract.version}

Land-cover segmentation for cacaomap (see DESIGN.md). ONNX opset {contract.opset}, input
`{contract.input_name}` (N, {contract.num_bands}, H, W) float32 normalised reflectance,
output `{contract.output_name}` (N, {len(contract.classes['classes'])}, H, W) logits.

- Bands: {', '.join(contract.bands)} ({contract.input_dtype}, scale {contract.reflectance_scale})
- Tile size {contract.tile_size}, default overlap {contract.overlap}
- MLflow run: {contract.mlflow_run_id}; git: {contract.git_sha}
- Dataset fingerprint: {contract.dataset_fingerprint}
- Parity (ONNX Runtime vs PyTorch): {json.dumps(contract.parity)}
- Created: {contract.created}

| code | class | colour |
|---|---|---|
{classes}

| test metric | value |
|---|---|
{metrics}

Limits: the figures above are on the held-out blocks of the training dataset; accuracy
on other imagery is unknown until measured on labels from it.
"""
