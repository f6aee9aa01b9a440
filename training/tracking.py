"""MLflow tracking: the project's logger defaults, run lineage and the config record."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from serving.files import sha256_file

#: Where runs go unless MLFLOW_TRACKING_URI says otherwise.
DEFAULT_TRACKING_URI = "sqlite:///experiments/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "experiments/mlartifacts"


def git_sha(cwd: str | Path | None = None) -> str:
    """The checked-out commit (``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dataset_fingerprint(files: Iterable[str | Path]) -> str:
    """sha256 over the names and contents of the files a dataset reads.

    Names count by basename, so the same data in another folder has the same print.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def resolve_tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the project's sqlite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def default_artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: local stores keep artifacts in experiments/."""
    if uri.startswith(("http://", "https://")):
        return None  # the tracking server decides
    return Path(DEFAULT_ARTIFACT_ROOT).resolve().as_uri()


def ensure_experiment(name: str) -> str:
    """Id of experiment ``name`` in the current store, created if needed."""
    import mlflow

    uri = resolve_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, default_artifact_location(uri)))


class CacaoMLFlowLogger(MLFlowLogger):
    """MLFlowLogger with the project's defaults.

    Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else a sqlite store under
    ``experiments/``; artifacts under ``experiments/mlartifacts`` for new experiments.
    """

    def __init__(
        self,
        experiment_name: str = "cacaomap",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        log_model: Literal[True, False, "all"] = True,
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Create (lazily) a run in the given experiment.

        Args:
            experiment_name: MLflow experiment.
            run_name: Display name of the run.
            tracking_uri: Tracking server or store (default: env, then sqlite).
            artifact_location: Artifact root for a new experiment.
            log_model: Log checkpoints as artifacts (True: the best/last at the end).
            tags: Extra run tags.
            run_id: Continue this run instead of starting a new one.
        """
        uri = tracking_uri or resolve_tracking_uri()
        if artifact_location is None:
            artifact_location = default_artifact_location(uri)
        all_tags = {"git_sha": git_sha(), **(tags or {})}
        super().__init__(
            experiment_name=experiment_name, run_name=run_name, tracking_uri=uri,
            tags=all_tags, log_model=log_model, artifact_location=artifact_location,
            run_id=run_id, save_dir=None,
        )


class MLflowSaveConfigCallback(SaveConfigCallback):
    """Record the full resolved LightningCLI config as the run's ``config.yaml``."""

    def save_config(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> None:
        """Log the config text to the MLflow run (and nothing to disk)."""
        config = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_text(logger.run_id, config, "config.yaml")


#: Run tags naming the process that trains a run (for finding killed runs).
PID_TAG, HOST_TAG = "cacaomap.pid", "cacaomap.host"
#: Checkpoint key holding the MLflow run id, so that a resume continues the run.
RUN_ID_KEY = "mlflow_run_id"


def _process_gone(pid: int, started_ms: int) -> bool:
    """Whether process ``pid`` no longer runs the training started at ``started_ms``."""
    import psutil

    try:
        return psutil.Process(pid).create_time() * 1000 > started_ms + 1000  # pid reused
    except psutil.NoSuchProcess:
        return True


def mark_orphaned_runs(client: Any, experiment_id: str, keep: str | None) -> list[str]:
    """Mark FAILED the RUNNING runs of this host whose training process is gone.

    A run killed with SIGKILL (or by the OOM killer, or a lost node) cannot record its
    own end; the next training on the same host does it, naming why. Runs of other
    hosts are left alone (their processes cannot be checked from here).

    Returns:
        The ids of the runs marked.
    """
    marked = []
    runs = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == keep or tags.get(HOST_TAG) != socket.gethostname():
            continue
        pid = tags.get(PID_TAG, "")
        if pid.isdigit() and _process_gone(int(pid), run.info.start_time):
            client.set_tag(run.info.run_id, "cacaomap.ended_by",
                           f"training process {pid} was gone; marked by a later run")
            client.set_terminated(run.info.run_id, "FAILED")
            marked.append(run.info.run_id)
    return marked


def checkpoint_run_id(ckpt_path: str | Path) -> str | None:
    """The MLflow run id a checkpoint was saved from (None for older checkpoints)."""
    from training.checkpoints import load_checkpoint_dict

    state = load_checkpoint_dict(ckpt_path)
    run_id = state.get(RUN_ID_KEY)
    return str(run_id) if run_id else None


class RunLineage(pl.Callback):
    """Log what a run was made from: data fingerprint, bands, classes, statistics.

    Also tags the run with the training process (pid, host), marks FAILED the runs of
    this host whose process was killed, and stores the run id in every checkpoint so
    that ``--ckpt_path`` continues the same run.
    """

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule  # type: ignore[attr-defined]
        for logger in trainer.loggers:
            if not isinstance(logger, MLFlowLogger):
                continue
            files = dm.dataset_files()
            params = {
                "lineage.dataset_fingerprint": dataset_fingerprint(files),
                "lineage.dataset_files": len(files),
                "lineage.bands": ",".join(dm.bands),
                "lineage.classes": ",".join(dm.schema.names),
                "lineage.init_weights": getattr(pl_module, "init_weights", None) or "none",
                "lineage.init_tensors_loaded": getattr(pl_module, "init_tensors_loaded", 0),
            }
            logger.log_hyperparams(params)
            logger.experiment.set_tag(logger.run_id, "git_sha", git_sha())
            logger.experiment.log_dict(logger.run_id, dm.class_schema, "classes.json")
            if dm.mean is not None:
                logger.experiment.log_dict(
                    logger.run_id, dm.statistics(), "normalization.json"
                )
            if dm.assignment is not None:
                logger.experiment.log_text(
                    logger.run_id,
                    json.dumps({"split": dm.assignment.split,
                                "blocks": [b.bounds for b in dm.assignment.blocks]}),
                    "split_blocks.json",
                )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record lineage once training data (and statistics) are ready."""
        trainer.datamodule.ensure_statistics()  # type: ignore[attr-defined]
        self._log(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.experiment_id is not None:
                logger.experiment.set_tag(logger.run_id, PID_TAG, str(os.getpid()))
                logger.experiment.set_tag(logger.run_id, HOST_TAG, socket.gethostname())
                mark_orphaned_runs(logger.experiment, logger.experiment_id, logger.run_id)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Keep the run id in the checkpoint (a resume continues this run)."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id:
                checkpoint[RUN_ID_KEY] = logger.run_id

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record lineage for a test-only run."""
        if trainer.state.fn == "test":
            self._log(trainer, pl_module)
