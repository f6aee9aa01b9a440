"""LightningCLI for training: config in YAML under ``experiments/``, linked arguments."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.exceptions import MlflowException

from training.data.datamodule import LandCoverDataModule
from training.tracking import MLflowSaveConfigCallback, checkpoint_run_id
from training.trainers.segmentation import LandCoverSegmentationTask


class CacaomapLightningCLI(LightningCLI):
    """LightningCLI whose data decides the model's channels, classes and bands.

    After ``fit`` it tests the best checkpoint on the held-out blocks, in the same
    MLflow run, unless ``--trainer.limit_test_batches 0``.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link data properties into the model's init arguments."""
        for source, target in (
            ("data.num_classes", "model.init_args.num_classes"),
            ("data.in_channels", "model.init_args.in_channels"),
            ("data.class_schema", "model.init_args.class_schema"),
            ("data.bands", "model.init_args.band_names"),
        ):
            parser.link_arguments(source, target, apply_on="instantiate")

    def before_fit(self) -> None:
        """Resuming from a checkpoint continues that checkpoint's MLflow run."""
        ckpt = self.config[self.subcommand].get("ckpt_path")
        if not ckpt or not Path(ckpt).is_file():
            return
        run_id = checkpoint_run_id(ckpt)
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger) and run_id and logger._run_id is None:
                try:
                    logger._mlflow_client.get_run(run_id)
                except MlflowException:
                    continue  # the checkpoint's run is in another store: start a new one
                logger._run_id = run_id

    def after_fit(self) -> None:
        """Test the best checkpoint (or the last weights) on the test blocks."""
        if self.trainer.limit_test_batches == 0 or self.trainer.interrupted:
            return
        best = self.trainer.checkpoint_callback
        has_best = isinstance(best, ModelCheckpoint) and bool(best.best_model_path)
        ckpt = "best" if has_best else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def run_lightning_cli(args: list[str] | None = None) -> CacaomapLightningCLI:
    """Run ``fit``/``validate``/``test``/``predict`` with ``args`` (None: ``sys.argv``)."""
    return CacaomapLightningCLI(
        LandCoverSegmentationTask,
        LandCoverDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=MLflowSaveConfigCallback,
        save_config_kwargs={"save_to_log_dir": False},
        args=args,
    )
