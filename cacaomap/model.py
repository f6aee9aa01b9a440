"""``cacaomap model export``: a trained model to ONNX with its contract.

``model evaluate``, ``model crossval`` and ``model active-learning`` are typed functions
of :mod:`training` that :mod:`cacaomap.main` registers as they are.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from cacaomap.grammar import CommandError
from serving.inference.model_store import MODELS_DIR


def export(
    checkpoint: Path | None = None,
    run_id: str | None = None,
    name: str = "cacaomap",
    models_dir: Path = MODELS_DIR,
    tile_size: int = 256,
    overlap: int = 32,
    parity_images: Path | None = None,
    register: bool = True,
    alias: str = "candidate",
) -> None:
    """Export a checkpoint (or a run's best checkpoint) to ONNX with its contract.

    Parity with PyTorch is checked on random and real tiles before anything is
    registered (MLflow registered model + alias, BentoML model store); the model folder
    appears only when everything succeeded.

    Args:
        checkpoint: A Lightning checkpoint of the task.
        run_id: Or an MLflow run whose best checkpoint to export, or a registered model
            ``models:/<name>@<alias>`` (its training run is re-exported).
        name: Registered model name.
        models_dir: Root of the model folders (see ``models/README.md``).
        tile_size: Tile side the service works at.
        overlap: Default overlap between scene windows.
        parity_images: Imagery for the parity check (default: the training imagery).
        register: Register in MLflow and the BentoML store (``--no-register``: only the
            folder).
        alias: MLflow alias set on the new version.

    Writes:
        MODELS_DIR/NAME/v<N>/: model.onnx (the contract embedded in its metadata),
        contract.json (bands, scale, normalisation, classes, sha256), MODEL_CARD.md; an
        MLflow model version with ALIAS and a BentoML model, unless --no-register.

    Examples:
        cacaomap model export --run-id 3f2a... --alias champion
        cacaomap model export --checkpoint runs/best.ckpt --no-register
        cacaomap model export --run-id models:/cacaomap@champion
    """
    from mlflow.exceptions import MlflowException

    from training.export.exporter import ExportError, export_model
    from training.export.registry import (
        RegistryError,
        checkpoint_from_run,
        run_of_model_uri,
        test_metrics_of_run,
    )

    if (checkpoint is None) == (run_id is None):
        raise CommandError("give exactly one of --checkpoint or --run-id")
    try:
        if run_id is not None and run_id.startswith("models:/"):
            run_id = run_of_model_uri(run_id)
        metrics = test_metrics_of_run(run_id) if run_id else {}
        with ExitStack() as stack:
            ckpt = checkpoint or stack.enter_context(checkpoint_from_run(str(run_id)))
            path = export_model(
                ckpt, name=name, models_dir=models_dir, tile_size=tile_size,
                overlap=overlap, parity_images=parity_images, mlflow_run_id=run_id,
                register=register, alias=alias, test_metrics=metrics,
            )
    except (ExportError, RegistryError, MlflowException) as err:
        raise CommandError(getattr(err, "message", None) or str(err)) from err
    print(f"exported {path}")
