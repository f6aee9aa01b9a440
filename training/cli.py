"""The ``cacaomap`` command: ``train`` (LightningCLI) and the project's other tools.

``cacaomap train fit|validate|test --config experiments/<name>.yaml`` is LightningCLI;
the other subcommands are typed functions turned into a CLI by jsonargparse. Heavy
imports happen inside the subcommands so that ``cacaomap --help`` is quick.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import auto_cli


def synth(
    out: Path = Path("datasets/synthetic/data/demo"),
    size: int = 512,
    seed: int = 0,
    polygons: bool = True,
) -> None:
    """Generate the synthetic two-date Sentinel-2 landscape near Tocache.

    Args:
        out: Output folder (replaced atomically).
        size: Scene width and height in pixels (10 m).
        seed: Random seed; the same seed writes the same files.
        polygons: Also write label polygons (GeoPackage).
    """
    from training.synthetic import LandscapeConfig, generate_landscape

    path = generate_landscape(out, LandscapeConfig(size=size, seed=seed), polygons)
    print(f"wrote synthetic landscape ({size}x{size} px, seed {seed}) to {path}")


def mlflow_ui_command() -> str:
    """The command that opens the MLflow UI on this project's runs."""
    import os

    from training.tracking import DEFAULT_TRACKING_URI

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    return f".venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def ui_hint() -> None:
    """Print the command that opens the MLflow UI on the runs."""
    print(f"Open the MLflow UI on the runs:\n  {mlflow_ui_command()}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cacaomap`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "train":
        from training.lightning_cli import run_lightning_cli

        if argv is None:  # LightningCLI reads sys.argv itself, help text included
            sys.argv = [f"{Path(sys.argv[0]).name} train", *args[1:]]
            run_lightning_cli()
        else:
            run_lightning_cli(args[1:])
        return
    auto_cli({"synth": synth, "mlflow-ui": ui_hint}, args=args)


if __name__ == "__main__":
    main()
