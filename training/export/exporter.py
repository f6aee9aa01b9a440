"""Checkpoint → ONNX + contract, parity-checked, registered, written atomically.

Order of work, so that nothing half-made is ever visible: export into a staged folder
beside the destination (:func:`serving.files.staged`), embed the contract, measure
parity of the served path (:class:`~serving.inference.tiles.TileClassifier` on tiles
that need padding and hold unobserved pixels) against PyTorch on random and real tiles
(refuse if it fails), register in MLflow (model + alias) and the BentoML model store
(:mod:`training.export.registry`), and only then rename the folder into place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import rasterio
import torch
from rasterio.windows import Window

from serving.files import sha256_file, staged
from serving.inference.contract import (
    CARD_FILE,
    CONTRACT_FILE,
    METADATA_KEY,
    ONNX_FILE,
    ModelContract,
)
from serving.inference.model_store import MODELS_DIR
from serving.inference.scene_checks import scene_bands
from serving.inference.tiles import TileClassifier
from serving.inference.validity import observed, observed_by_sensor, sensor_groups
from training.checkpoints import load_checkpoint_dict
from training.export.registry import register_model
from training.tracking import git_sha
from training.trainers.segmentation import LandCoverSegmentationTask

log = logging.getLogger(__name__)

#: Pinned ONNX opset of exported models.
OPSET = 18
#: Parity thresholds (fp32) on real tiles: max |Δlogit| ≤ 1e-3, or — for models whose
#: logits run into the hundreds, where fp32 accumulation error grows with magnitude —
#: max |Δlogit| / max |logit| ≤ 1e-5 (~80 fp32 ulps); and argmax agreement ≥ 99.9%.
MAX_ABS_LOGIT_DIFF = 1e-3
MAX_REL_LOGIT_DIFF = 1e-5
MIN_ARGMAX_AGREEMENT = 0.999


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
    raw = load_checkpoint_dict(path)
    stats_blob = raw.get("LandCoverDataModule", {}).get("statistics")
    if stats_blob is None:
        raise ExportError(f"{path} has no normalisation statistics (LandCoverDataModule)")
    task = LandCoverSegmentationTask.load_from_checkpoint(path, map_location="cpu",
                                                          weights_only=True)
    task.eval()
    return LoadedCheckpoint(
        task=task, statistics=json.loads(stats_blob),
        data_hparams=dict(raw.get("datamodule_hyper_parameters", {})), path=Path(path),
    )


def real_tiles(
    images: str | Path, dtype: str, bands: int | Sequence[str], tile: int, count: int,
    seed: int = 0
) -> np.ndarray:
    """Read ``count`` random tiles from the imagery the model was trained on.

    ``bands``: the model's band names (found by the files' band descriptions), or their
    number.
    """
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
            indexes = scene_bands(src, bands)
            if indexes is None:
                raise ExportError(f"{files[0]} has {src.count} bands, model {bands}")
            data = src.read(indexes, window=Window(col, row, size, size))
        padded = np.zeros((len(data), tile, tile), data.dtype)
        padded[:, :size, :size] = data
        out.append(padded)
    return np.stack(out).astype(dtype)


def parity_tiles_like_served(tiles: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Tiles as the service meets them: a side that needs padding, unobserved pixels.

    Crops ``tiles`` to a side that is not a multiple of the contract's ``size_multiple``
    (so the served path pads and crops), then marks a block of each tile unobserved
    (``image_nodata`` in every band, or NaN for float imagery without a nodata value)
    and one band of one pixel as nodata (a pixel still observed in the other bands).
    """
    multiple = contract.size_multiple
    side = max(1, min(tiles.shape[-2:]) - multiple // 2 - 1)
    if side % multiple == 0:
        side -= 1
    out = np.array(tiles[..., :side, :side])
    nodata = contract.image_nodata
    floating = np.issubdtype(out.dtype, np.floating)
    fill = nodata if nodata is not None else (np.nan if floating else None)
    if fill is not None and side >= 4:
        q = side // 4
        out[:, :, q : 2 * q, q : 2 * q] = fill
        out[:, 0, -1, -1] = fill
    return out


def reference_logits(task: LandCoverSegmentationTask, contract: ModelContract,
                     tiles: np.ndarray) -> np.ndarray:
    """PyTorch's logits for raw tiles, prepared as in training.

    Unobserved pixels take the band mean (0 once normalised), as the data module does,
    and with optical and radar bands each sensor's bands where that sensor alone saw
    nothing; the input is zero-padded to the contract's ``size_multiple`` and cropped
    back.
    """
    valid = torch.from_numpy(np.asarray(observed(tiles, contract.image_nodata)))
    x = torch.from_numpy(tiles.astype(np.float32))
    mean = torch.tensor(contract.mean, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(contract.std, dtype=torch.float32)[None, :, None, None]
    x = torch.where(valid[:, None], (x - mean) / std, torch.zeros(()))
    groups = sensor_groups(contract.bands)
    if len(groups) > 1:
        for group, seen in zip(groups, observed_by_sensor(tiles, contract.image_nodata,
                                                          groups), strict=True):
            seen_t = torch.from_numpy(np.asarray(seen, bool))
            x[:, group] = torch.where(seen_t[:, None], x[:, group], torch.zeros(()))
    h, w = x.shape[-2:]
    m = contract.size_multiple
    x = torch.nn.functional.pad(x, (0, (-w) % m, 0, (-h) % m))
    with torch.no_grad():
        return task(x)[..., :h, :w].numpy()


def measure_parity(
    task: LandCoverSegmentationTask, classifier: TileClassifier, tiles: np.ndarray
) -> dict[str, float]:
    """ONNX Runtime through the served path vs PyTorch, on tiles as served.

    The served side is :class:`~serving.inference.tiles.TileClassifier` itself (its
    normalisation, nodata fill, padding and argmax), not the bare ONNX graph, on
    :func:`parity_tiles_like_served` versions of ``tiles``.

    Returns:
        Max |Δlogit| over the observed classes, the largest |logit|, their ratio, and
        the agreement of the served class codes with PyTorch's argmax on observed
        pixels.
    """
    contract = classifier.contract
    tiles = parity_tiles_like_served(tiles, contract)
    ref = reference_logits(task, contract, tiles)
    got = classifier.logits(tiles)
    classes = [c for c in range(ref.shape[1]) if c != contract.schema.nodata]
    diff = float(np.abs(ref[:, classes] - got[:, classes]).max())
    scale = float(np.abs(ref[:, classes]).max())
    valid = classifier.valid_mask(tiles)
    ref[:, contract.schema.nodata] = -np.inf
    served = classifier.classify(tiles) if not np.issubdtype(tiles.dtype, np.floating) \
        else np.asarray(got.argmax(1), np.uint8)
    agree = float((ref.argmax(1) == served)[valid].mean()) if valid.any() else 1.0
    return {"max_abs_logit_diff": diff, "max_abs_logit": scale,
            "rel_logit_diff": diff / max(scale, 1e-12), "argmax_agreement": agree,
            "tile_side": float(tiles.shape[-1]),
            "unobserved_fraction": float(1 - valid.mean())}


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
    models_dir: str | Path = MODELS_DIR,
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
    version = _next_version(root)
    final = root / version
    with staged(final, directory=True, prefix=f".export-{os.getpid()}-") as tmp:
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
        real = real_tiles(images, contract.input_dtype, list(bands), tile_size, parity_tiles)
        random_parity = measure_parity(task, classifier, random)
        real_parity = measure_parity(task, classifier, real)
        contract.parity = {f"random_{k}": v for k, v in random_parity.items()} | {
            f"real_{k}": v for k, v in real_parity.items()}
        if not (parity_ok(real_parity) and parity_ok(random_parity)):
            raise ExportError(f"ONNX Runtime vs PyTorch parity failed: {contract.parity}")
        package_model(tmp, contract)
        if register:
            register_model(tmp, contract, alias)
    log.info("exported %s", final)
    return final


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


def model_card(contract: ModelContract) -> str:
    """A short human-readable card written beside the model."""
    classes = "\n".join(
        f"| {c['code']} | {c['name']} | {c['colour']} |" for c in contract.classes["classes"]
    )
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(contract.test_metrics.items())
                        ) or "| (none recorded) | |"
    return f"""# Model card: {contract.name} {contract.version}

Land-cover segmentation for cacaomap (see models/README.md). ONNX opset {contract.opset}, input
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
