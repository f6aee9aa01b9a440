"""Where exported models are registered and found again: MLflow and BentoML stores.

- :func:`register_model`: the exported files logged to the training run, a registered
  MLflow model version with an alias, and a BentoML store model.
- :func:`resolve_model_uri`: ``models:/<name>@<alias>`` back to the exact, hash-checked
  files.
- :func:`checkpoint_from_run`, :func:`test_metrics_of_run`, :func:`run_of_model_uri`:
  what a training run logged.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.files import staged
from serving.inference.contract import CONTRACT_FILE, ONNX_FILE, ModelContract
from serving.inference.model_store import MODELS_DIR
from training.tracking import ensure_experiment, resolve_tracking_uri

#: Run artifact folder holding the exported model folders, one per version.
MODEL_FILES_PATH = "cacaomap-model"


class RegistryError(RuntimeError):
    """A run or registered model that does not hold what cacaomap needs."""


@contextmanager
def checkpoint_from_run(run_id: str, tracking_uri: str | None = None) -> Iterator[Path]:
    """The best checkpoint logged by a training run, downloaded for the ``with`` block.

    The download lives in a temporary folder removed when the block ends (a checkpoint
    is hundreds of MB; MLflow's own temporary download folder is never removed).
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri or resolve_tracking_uri())
    dirs = [a.path for a in client.list_artifacts(run_id) if a.is_dir]
    candidates = [d for d in dirs if d.startswith(("best", "epoch"))] or [
        d for d in dirs if d == "last"
    ]
    if not candidates:
        raise RegistryError(f"run {run_id} logged no checkpoint")
    with tempfile.TemporaryDirectory(prefix="cacaomap-checkpoint-") as tmp:
        local = Path(client.download_artifacts(run_id, candidates[-1], tmp))
        yield next(local.rglob("*.ckpt"))


def resolve_model_uri(uri: str, dest: str | Path = MODELS_DIR) -> Path:
    """Download ``models:/<name>@<alias>`` (or ``models:/<name>/<version>``) to a folder.

    The files are the exact ones exported: ``dest/<name>/<version>/`` is reused only
    when its model hashes to the registered version's ``onnx_sha256`` tag (versions are
    numbered per machine: another machine's "v1" is another model), else the version's
    files go to ``dest/<name>/<version>-<sha256[:12]>/``; the downloaded files must hash
    to the tag.

    Raises:
        RegistryError: A version not registered by cacaomap, or whose files do not hash
            to its tag.
    """
    import mlflow

    from serving.inference.contract import load_model_dir

    if not uri.startswith("models:/"):
        raise RegistryError(f"not a registered-model URI: {uri!r}")
    ref = uri.removeprefix("models:/")
    client = mlflow.MlflowClient(resolve_tracking_uri())
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = ref.split("/", 1)
        version = client.get_model_version(name, number)
    folder = version.tags.get("cacaomap_version")
    expected = version.tags.get("onnx_sha256", "")
    if not folder or not version.run_id or not expected:
        raise RegistryError(f"{uri} was not registered by cacaomap model export")
    target = Path(dest) / name / folder
    if (target / ONNX_FILE).is_file() and _sha_of(target) != expected:
        target = Path(dest) / name / f"{folder}-{expected[:12]}"  # another machine's v<N>
    if not (target / ONNX_FILE).is_file():
        with staged(target, directory=True, prefix=".download-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=f"{MODEL_FILES_PATH}/{folder}",
                dst_path=str(tmp / "artifacts"), tracking_uri=resolve_tracking_uri())
            for item in Path(local).iterdir():
                shutil.move(item, tmp / item.name)
            shutil.rmtree(tmp / "artifacts")
            if _sha_of(tmp) != expected:
                raise RegistryError(f"{uri}: the downloaded model does not hash to the "
                                    f"registered onnx_sha256 {expected[:12]}…")
    load_model_dir(target)
    if _sha_of(target) != expected:
        raise RegistryError(f"{uri}: {target} does not hash to the registered "
                            f"onnx_sha256 {expected[:12]}…")
    return target


def _sha_of(folder: Path) -> str:
    """sha256 of a model folder's ONNX file."""
    from serving.files import sha256_file

    return sha256_file(folder / ONNX_FILE)


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


def register_model(model_dir: Path, contract: ModelContract, alias: str) -> None:
    """Log the ONNX model to MLflow (registered, with an alias) and save it to BentoML."""
    import mlflow
    import onnx

    from serving.http.bento import save_model

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
    save_model(model_dir, contract, labels={"version": contract.version, "alias": alias},
               metadata={"mlflow_version": registered})
