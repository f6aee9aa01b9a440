"""k-fold cross-validation of a training recipe over a folder of labelled chips.

Each chip is in exactly one fold's test set. For fold ``i`` the chips of fold ``i``
are the test set, ``val_share`` of all chips (at least one) taken from the others are
the validation set (checkpoint selection, early stopping), and the rest train; the
assignment is written as a ``file,split`` CSV (:func:`training.data.splits.
read_split_file`) and the recipe runs unchanged with ``--data.init_args.split_file``
(``cacaomap train fit``, one MLflow run per fold, tagged with the cross-validation's
name and the fold). Its best checkpoint is then scored on the fold's test chips
through the path that serves (:func:`training.evaluate.evaluate`), and the folds'
figures and their mean are printed and written to ``<out>/<name>/crossval.json`` and
``crossval.csv`` (each fold's evaluation in ``<out>/<name>/evaluations/fold-<k>``).
A fold that finished (``fold-<k>.json``, for the same assignment) is not run again:
an interrupted cross-validation resumes with the next fold.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def fold_assignments(files: list[str], folds: int, seed: int, val_share: float
                     ) -> list[dict[str, str]]:
    """The split of every file in each fold (``train``, ``val`` or ``test``).

    Args:
        files: File names of the chips.
        folds: Number of folds (each chip is tested in exactly one).
        seed: Seed of the shuffle that deals the chips into folds.
        val_share: Share of all chips in each fold's validation set (at least one).

    Raises:
        ValueError: If there are too few chips for the folds and a validation set.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, not {folds}")
    if not 0.0 < val_share < 1.0:
        raise ValueError(f"val_share must be in (0, 1), not {val_share}")
    n = len(files)
    n_val = max(1, round(val_share * n))
    if n < folds or n - math.ceil(n / folds) - n_val < 1:
        raise ValueError(f"{n} chips are too few for {folds} folds with {n_val} "
                         "validation chip(s) and at least one training chip")
    order = [files[i] for i in np.random.default_rng(seed).permutation(n)]
    dealt = np.array_split(np.arange(n), folds)
    assignments = []
    for k in range(folds):
        test = {order[i] for i in dealt[k]}
        rest = [f for f in order if f not in test]
        val = set(rest[:n_val])
        assignments.append({f: "test" if f in test else "val" if f in val else "train"
                            for f in sorted(files)})
    return assignments


def write_split_csv(path: Path, assignment: dict[str, str]) -> Path:
    """A fold's assignment as the ``file,split`` CSV a split file takes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split"])
        writer.writerows(sorted(assignment.items()))
    return path


def fold_row(fold: int, assignment: dict[str, str], metrics: dict[str, Any],
             seconds: float, checkpoint: Path) -> dict[str, Any]:
    """One fold's line of the table: chip counts, pooled accuracy, per-class F1/IoU."""
    from training.data.splits import SPLIT_NAMES

    pooled = metrics["pooled"]
    row: dict[str, Any] = {"fold": fold}
    for split in SPLIT_NAMES:
        row[f"{split}_chips"] = sum(1 for s in assignment.values() if s == split)
    row["accuracy"] = pooled["accuracy"]
    for figure in ("F1", "IoU"):
        for name, value in pooled["metrics"][figure].items():
            row[f"{figure}_{name}"] = value
    row["pixels"] = pooled["pixels"]
    row["train_seconds"] = round(seconds, 1)
    row["checkpoint"] = str(checkpoint)
    return row


def mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and, as ``*_std``, the standard deviation) of the folds' figures."""
    keys = [k for k in rows[0] if k.startswith(("accuracy", "F1_", "IoU_"))]
    mean: dict[str, Any] = {"fold": "mean"}
    for key in keys:
        values = np.array([r[key] for r in rows], dtype=float)
        mean[key] = float(values.mean())
        mean[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean


def crossval(
    images: Path | None = None,
    labels: Path | None = None,
    recipe: Path = Path("experiments/small_real_chips.yaml"),
    classes: Path | None = None,
    label_map: dict[int, int] | None = None,
    folds: int = 3,
    seed: int = 0,
    val_share: float = 0.1,
    image_glob: str = "*.tif",
    name: str = "crossval",
    out: Path = Path("experiments/crossval"),
    train_args: str | None = None,
) -> Path:
    r"""Cross-validate a training config over a folder of chips (k folds, each chip tested once).

    Args:
        images: Folder of image chips (``--data.init_args.images``).
        labels: Folder of label rasters (``--data.init_args.labels``).
        recipe: The training config (``--config`` of ``cacaomap train fit``).
        classes: Class schema YAML (``--data.init_args.classes``).
        label_map: Recode label values to schema codes (``--data.init_args.label_map``).
        folds: Number of folds.
        seed: Seed of the fold assignment (the training's seed is the config's).
        val_share: Share of all chips in each fold's validation set.
        image_glob: Glob of the image chips in ``images``.
        name: Name of this cross-validation (folder, MLflow tag, run names).
        out: Parent folder of cross-validation outputs.
        train_args: More ``cacaomap train fit`` arguments, one quoted string passed to
            every fold (``--train-args '--trainer.max_epochs 5'``).

    Returns:
        The output folder, ``<out>/<name>``.

    Raises:
        ValueError: If the folder has too few chips, or a fold's training fails.

    Writes:
        OUT/NAME/: the fold assignment (split CSVs), fold-<k>.json per finished fold
        (a rerun resumes), crossval.json, crossval.csv and crossval.png (per-fold table,
        mean and sd); one MLflow run per fold, tagged ``cacaomap.crossval``.

    Examples:
        cacaomap model crossval --images chips/images --labels chips/labels \
            --classes chips/classes.yaml --label-map 1=1 4=2 --folds 3 --name amazon-3fold
    """
    from training.data.splits import SPLIT_NAMES
    from training.evaluate import evaluate

    if images is None or labels is None:
        raise ValueError("give --images and --labels: the folders of chips and labels")
    files = sorted(p.name for p in Path(images).glob(image_glob) if p.is_file())
    if not files:
        raise ValueError(f"no image chips matching {image_glob!r} in {images}")
    assignments = fold_assignments(files, folds, seed, val_share)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, assignment in enumerate(assignments):
        done = folder / f"fold-{k}.json"
        if done.exists():
            row = json.loads(done.read_text())
            if row.get("assignment") == assignment:
                print(f"fold {k + 1}/{folds}: done before ({done}), reused", flush=True)
                rows.append(row["row"])
                continue
        split_csv = write_split_csv(folder / f"fold-{k}.csv", assignment)
        counts = "/".join(str(sum(1 for s in assignment.values() if s == split))
                          for split in SPLIT_NAMES)
        print(f"fold {k + 1}/{folds}: {counts} chips (train/val/test), split {split_csv}",
              flush=True)
        root = folder / f"fold-{k}"
        args = [sys.executable, "-m", "cacaomap", "train", "fit", "--config", str(recipe),
                "--data.init_args.images", str(images), "--data.init_args.labels", str(labels),
                "--data.init_args.split_file", str(split_csv),
                "--trainer.default_root_dir", str(root),
                "--trainer.logger.init_args.run_name", f"{name}-fold{k}",
                "--trainer.logger.init_args.tags",
                json.dumps({"cacaomap.crossval": name, "cacaomap.fold": str(k)})]
        if classes is not None:
            args += ["--data.init_args.classes", str(classes)]
        if label_map is not None:
            args += ["--data.init_args.label_map", json.dumps(label_map)]
        args += shlex.split(train_args or "")
        start = time.monotonic()
        if subprocess.run(args, check=False).returncode != 0:
            raise ValueError(f"fold {k}: training failed (its output is above)")
        seconds = time.monotonic() - start
        checkpoint = _best_checkpoint(root)
        evaluated = evaluate(checkpoint=checkpoint, split="test", name=f"fold-{k}",
                             out=folder / "evaluations")
        metrics = json.loads((evaluated / "metrics.json").read_text())
        rows.append(fold_row(k, assignment, metrics, seconds, checkpoint))
        done.write_text(json.dumps({"assignment": assignment, "row": rows[-1]}, indent=2))
    table = [*rows, mean_row(rows)]
    (folder / "crossval.json").write_text(json.dumps(
        {"recipe": str(recipe), "images": str(images), "folds": folds, "seed": seed,
         "val_share": val_share, "rows": table}, indent=2))
    keys = list(dict.fromkeys(k for r in table for k in r))
    with (folder / "crossval.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    _print_table(table)
    plot_folds(table, folder / "crossval.png")
    print(f"wrote {folder / 'crossval.json'}, crossval.csv and crossval.png")
    return folder


def plot_folds(table: list[dict[str, Any]], path: Path) -> Path:
    """Bars of pooled accuracy and each class's F1 and IoU per fold, and their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in table[0] if k == "accuracy" or (
        k.startswith(("F1_", "IoU_")) and not k.endswith(("_macro", "_std")))]
    width = 0.8 / len(table)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(keys), 3.6))
    for i, row in enumerate(table):
        positions = np.arange(len(keys)) + (i - (len(table) - 1) / 2) * width
        errors = [row.get(f"{k}_std", 0.0) for k in keys]
        ax.bar(positions, [row[k] for k in keys], width, yerr=errors,
               label=f"fold {row['fold']}" if row["fold"] != "mean" else "mean ± sd",
               color=None if row["fold"] != "mean" else "black", alpha=0.85)
    ax.set_xticks(np.arange(len(keys)), [k.replace("_", " ") for k in keys])
    low = min(row[k] for row in table for k in keys)
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("held-out chips, pooled")
    ax.legend(fontsize=8, ncol=len(table), loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _best_checkpoint(root: Path) -> Path:
    """The fold's best checkpoint (else its last) under its root folder."""
    found = sorted(root.rglob("best*.ckpt")) or sorted(root.rglob("last*.ckpt"))
    if not found:
        raise ValueError(f"no checkpoint was written under {root}")
    return found[-1]


def _print_table(table: list[dict[str, Any]]) -> None:
    keys = [k for k in table[0] if k == "accuracy" or k.startswith(("F1_", "IoU_"))]
    print("| fold | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for row in table:
        cells = [f"{row[k]:.3f}" + (f" ± {row[k + '_std']:.3f}" if f"{k}_std" in row else "")
                 for k in keys]
        print(f"| {row['fold']} | " + " | ".join(cells) + " |")
