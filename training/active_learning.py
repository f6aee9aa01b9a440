"""``cacaomap model active-learning``: do labels chosen by uncertainty beat labels at random?

The labelling loop of the README (classify → suggest → label → train → evaluate),
simulated where the truth is known, so that the labels a model needs are measured:

- **Ground.** The images are split once into a *pool* (where labels may be asked
  for), a *validation* part and a *test* part: a single scene by a line (its west
  ``1 - holdout`` share is the pool, the east part is cut north/south into validation
  and test), a folder of chips by whole chips. The split is a split file
  (:func:`training.data.splits.read_split_file`) that every round trains with.
- **Candidates.** ``candidates`` pixels drawn at random from the pool's truth (a label
  raster on the images' grid, or a raster per chip): the places a labeller could be
  sent to, each with its true class. ``val_points`` pixels of the validation part's
  truth are the trainer's validation set, the same in every round and strategy.
- **Rounds.** Round 0 labels ``initial`` random candidates (shared by the strategies).
  Each round trains the recipe from scratch on the labelled points (``cacaomap train
  fit``, patches placed at the labels), takes its *last* checkpoint (fixed epochs: no
  choice is made on held-out ground), exports it, and scores it through the path that
  serves on the test part's full truth (:func:`serving.inference.evaluation.
  evaluate_images` within the test ground). It then adds ``batch`` labels: the
  candidates of highest uncertainty (1 - the confidence COG the served classification
  writes, :mod:`serving.inference.confidence`), at least ``min_spacing`` pixels apart,
  or ``batch`` random candidates.
- **Output** (``<out>/<name>/``): ``active_learning.json`` (every round: labels, test
  macro IoU, per-class IoU, accuracy), ``active_learning.csv``, ``curve.png`` (test
  macro IoU against labels, one line per strategy), and, for each strategy, the labels
  each needs to reach the macro IoU the other reaches; ``candidates.npz`` (the pool),
  and per round its labels (``labels.geojson``), ``score.json`` and the pool's
  confidence. A round that finished (its ``round.json`` for the same settings) is not
  trained again.

The pool, its ground and the picks are :mod:`training.active_learning_pool`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from training.active_learning_pool import (
    Candidates,
    Ground,
    add_corners,
    draw_pixels,
    most_uncertain,
    split_ground,
    write_points,
)

Strategy = Literal["uncertainty", "random"]


def learning_curve_labels(rows: list[dict[str, Any]], strategy: str, target: float
                          ) -> int | None:
    """Fewest labels with which ``strategy`` reached test macro IoU ``target``."""
    reached = [r["labels"] for r in rows
               if r["strategy"] == strategy and r["IoU_macro"] >= target - 1e-9]
    return min(reached) if reached else None


def plot_curve(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Test macro IoU against labels, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for strategy, style in (("uncertainty", "o-"), ("random", "s--")):
        mine = sorted((r["labels"], r["IoU_macro"]) for r in rows
                      if r["strategy"] == strategy)
        if mine:
            ax.plot(*zip(*mine, strict=True), style, label=strategy)
    ax.set_xlabel("labelled points")
    ax.set_ylabel("test macro IoU (served path)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def _score(checkpoint: Path, pairs: list[tuple[Path, Path]], ground: Ground,
           pool_images: list[Path], label_map: dict[int, int] | None, folder: Path
           ) -> tuple[dict[str, Any], dict[str, NDArray[np.uint8]]]:
    """Export ``checkpoint``; score it on the test ground; the pool's confidence."""
    import rasterio

    from serving.inference.contract import load_model_dir
    from serving.inference.evaluation import evaluate_images
    from serving.inference.scene import classify_file
    from serving.inference.tiles import TileClassifier
    from training.export.exporter import export_model

    with tempfile.TemporaryDirectory(prefix="cacaomap-al-") as tmp:
        model = export_model(checkpoint, models_dir=tmp, register=False,
                             parity_images=pairs[0][0])
        classifier = TileClassifier(*load_model_dir(model))
        result = evaluate_images(pairs, classifier, label_map=label_map,
                                 within=(ground.test, ground.crs))
        confidence: dict[str, NDArray[np.uint8]] = {}
        for image in pool_images:
            classify_file(image, Path(tmp) / "classes.tif", classifier,
                          confidence=Path(tmp) / "confidence.tif")
            with rasterio.open(Path(tmp) / "confidence.tif") as src:
                confidence[image.name] = src.read(1)
    pooled = result.pooled
    score = {"IoU_macro": pooled.table["IoU"]["macro"], "accuracy": pooled.accuracy,
             "test_pixels": pooled.pixels,
             **{f"IoU_{c}": v for c, v in pooled.table["IoU"].items() if c != "macro"},
             "uncertainty_right": result.uncertainty.get("right"),
             "uncertainty_wrong": result.uncertainty.get("wrong")}
    (folder / "score.json").write_text(json.dumps(score, indent=2, default=str))
    return score, confidence


def active_learning(
    images: Path | None = None,
    truth: Path | None = None,
    recipe: Path = Path("experiments/active_learning/recipe.yaml"),
    data: Path | None = None,
    classes: Path | None = None,
    image_glob: str = "*.tif",
    label_map: dict[int, int] | None = None,
    initial: int = 20,
    batch: int = 20,
    rounds: int = 4,
    candidates: int = 5000,
    val_points: int = 300,
    holdout: float = 0.4,
    min_spacing: float = 3.0,
    strategies: list[Strategy] | None = None,
    seed: int = 0,
    name: str = "active-learning",
    out: Path = Path("experiments/active_learning"),
    train_args: str | None = None,
    keep_checkpoints: bool = False,
) -> Path:
    """Measure uncertainty sampling against random sampling, round by round.

    Args:
        images: An image GeoTIFF (a scene) or a folder of image chips.
        truth: The known labels: one label raster for all images, or a folder of
            label rasters named like the images.
        recipe: The training config (``--config`` of ``cacaomap train fit``); its
            epochs are fixed and its last checkpoint is scored.
        data: A data-module YAML of the set (bands, classes, nodata), passed as
            ``--data`` before the labels of each round.
        classes: Class schema YAML (default: the data's, else the project's).
        image_glob: Glob of the image chips in an ``images`` folder.
        label_map: Recode truth values to schema codes (others: nodata).
        initial: Random labels of round 0 (shared by the strategies).
        batch: Labels added per round.
        rounds: Rounds after round 0.
        candidates: Pool pixels (with their truth) the labels are chosen from.
        val_points: Validation pixels of the trainer (the same every round).
        holdout: Share of the ground held out (validation and test).
        min_spacing: Least distance between uncertainty picks, in pixels.
        strategies: ``uncertainty`` and/or ``random`` (default: both).
        seed: Seed of the split, the candidates and the random picks (the training's
            seed is the recipe's).
        name: Name of this run (folder, MLflow tags, run names).
        out: Parent folder of the outputs.
        train_args: More ``cacaomap train fit`` arguments, one quoted string passed to
            every round (``--train-args '--trainer.max_epochs 5'``).
        keep_checkpoints: Keep each round's checkpoints (else removed once scored;
            the round's MLflow run keeps its metrics and lineage).

    Returns:
        The output folder, ``<out>/<name>``.

    Raises:
        ValueError: On missing inputs, or when a round's training fails.

    Writes:
        OUT/NAME/: split.geojson, per strategy and round its labels.geojson,
        score.json and round.json (a rerun resumes), active_learning.json,
        active_learning.csv and curve.png; one MLflow run per round.

    Examples:
        cacaomap model active-learning --config experiments/active_learning/synthetic.yaml
        cacaomap model active-learning --images scene.tif --truth labels.tif --rounds 4
    """
    import rasterio
    import yaml

    from serving.classes import load_classes
    from serving.inference.evaluation import pair_labels

    if images is None or truth is None:
        raise ValueError("give --images and --truth: the imagery and its known labels")
    if min(initial, batch) < 1 or rounds < 1:
        raise ValueError("initial and batch must be at least 1, and rounds at least 1")
    chosen_strategies: list[Strategy] = list(strategies or ["uncertainty", "random"])
    files = sorted(images.glob(image_glob)) if images.is_dir() else [images]
    if not files:
        raise ValueError(f"no images matching {image_glob!r} in {images}")
    pairs = pair_labels(files, truth)
    if classes is None and data is not None:
        classes = (yaml.safe_load(data.read_text()) or {}).get("init_args", {}).get("classes")
    schema = load_classes(classes)
    folder = out / name
    ground = split_ground(files, holdout, seed, folder)
    rng = np.random.default_rng(seed)
    pool = draw_pixels(files, [t for _, t in pairs], ground.pool, ground.crs, candidates,
                       rng, schema.nodata, label_map)
    val = draw_pixels(files, [t for _, t in pairs], ground.val, ground.crs, val_points,
                      rng, schema.nodata, label_map)
    np.savez_compressed(folder / "candidates.npz", **vars(pool))
    with rasterio.open(files[0]) as src:
        spacing = min_spacing * abs(src.res[0])
    pool_images = sorted({files[i] for i in np.unique(pool.image)})
    start = [int(i) for i in rng.choice(len(pool), size=min(initial, len(pool)),
                                        replace=False)]
    settings = {"images": str(images), "truth": str(truth), "recipe": str(recipe),
                "recipe_text": recipe.read_text(), "data": str(data),
                "label_map": label_map, "initial": initial, "batch": batch,
                "candidates": candidates, "val_points": val_points, "holdout": holdout,
                "min_spacing": min_spacing, "seed": seed, "train_args": train_args}
    key = _settings_key(settings)
    print(f"active learning {name!r}: {len(pool)} candidates in the pool, {len(val)} "
          f"validation points, test ground {ground.split_file}; round 0: {len(start)} "
          f"random labels, then {rounds} rounds of {batch}", flush=True)
    rows: list[dict[str, Any]] = []
    shared: dict[str, Any] | None = None
    for strategy in chosen_strategies:
        picked = list(start)
        pick_rng = np.random.default_rng(seed + 1)  # the random strategy's picks
        for r in range(rounds + 1):
            root = folder / "round-0" if r == 0 else folder / strategy / f"round-{r}"
            root.mkdir(parents=True, exist_ok=True)
            done = root / "round.json"
            record = json.loads(done.read_text()) if done.exists() else {}
            if record.get("key") == key and record.get("picked") == picked:
                row, confidence_file = record["row"], root / "confidence.npz"
                confidence = dict(np.load(confidence_file)) if confidence_file.exists() else {}
                print(f"{strategy} round {r}: done before ({done}), reused", flush=True)
            elif r == 0 and shared is not None:
                row, confidence = dict(shared["row"]), shared["confidence"]
            else:
                labels = write_points(root / "labels.geojson", pool, picked, ground.crs,
                                      extra=val)
                add_corners(labels, files)
                print(f"{strategy} round {r}: training on {len(picked)} labels", flush=True)
                started = time.monotonic()
                _train(recipe, data, images, image_glob, labels, ground, root,
                       f"{name}-{strategy}-r{r}", {"cacaomap.active_learning": name,
                                                   "cacaomap.strategy": strategy,
                                                   "cacaomap.round": str(r)},
                       classes, train_args)
                seconds = time.monotonic() - started
                checkpoint = _last_checkpoint(root)
                score, confidence = _score(checkpoint, pairs, ground, pool_images,
                                           label_map, root)
                row = {"round": r, "labels": len(picked), **score,
                       "train_seconds": round(seconds, 1)}
                np.savez_compressed(root / "confidence.npz", **confidence)  # type: ignore[arg-type]
                if not keep_checkpoints:  # a U-Net's checkpoints are ~170 MB each
                    for stale in root.rglob("*.ckpt"):
                        stale.unlink()
                done.write_text(json.dumps({"key": key, "picked": picked, "row": row},
                                           indent=2, default=str))
            row = {**row, "strategy": strategy}
            if r == 0:
                shared = {"row": row, "confidence": confidence}
            rows.append(row)
            print(f"{strategy} round {r}: {row['labels']} labels, test macro IoU "
                  f"{row['IoU_macro']:.3f}", flush=True)
            if r == rounds:
                break
            picked += _next_labels(strategy, confidence, pool, files, set(picked), batch,
                                   spacing, pick_rng)
    return _write_summary(folder, rows, chosen_strategies, name)


def _next_labels(strategy: Strategy, confidence: dict[str, NDArray[np.uint8]],
                 pool: Candidates, files: list[Path], taken: set[int], batch: int,
                 spacing: float, rng: np.random.Generator) -> list[int]:
    """The candidates a strategy labels next: most uncertain (spread), or at random."""
    from serving.inference.confidence import decode_confidence

    if strategy == "uncertainty":
        u = np.full(len(pool), np.nan)
        for k, image in enumerate(files):
            at = pool.image == k
            if at.any() and image.name in confidence:
                u[at] = 1 - decode_confidence(confidence[image.name][pool.row[at],
                                                                     pool.col[at]])
        return most_uncertain(u, pool, taken, batch, spacing)
    free = np.array([i for i in range(len(pool)) if i not in taken])
    return [int(i) for i in rng.choice(free, size=min(batch, len(free)), replace=False)]

def _train(recipe: Path, data: Path | None, images: Path, image_glob: str, labels: Path,
           ground: Ground, root: Path, run_name: str, tags: dict[str, str],
           classes: Path | None, train_args: str | None) -> None:
    args = [sys.executable, "-m", "cacaomap", "train", "fit", "--config", str(recipe)]
    if data is not None:
        args += ["--data", str(data)]
    args += ["--data.init_args.images", str(images),
             "--data.init_args.image_glob", image_glob if images.is_dir() else images.name,
             "--data.init_args.labels", str(labels),
             "--data.init_args.label_kind", "vector",
             "--data.init_args.label_glob", labels.name,
             "--data.init_args.label_field", "label",
             "--data.init_args.label_map", "null",
             "--data.init_args.filename_regex", ".*",
             "--data.init_args.split_file", str(ground.split_file),
             "--data.init_args.patches_at", "labels",
             "--trainer.default_root_dir", str(root),
             "--trainer.limit_test_batches", "0",
             "--trainer.logger.init_args.run_name", run_name,
             "--trainer.logger.init_args.tags", json.dumps(tags)]
    if classes is not None:
        args += ["--data.init_args.classes", str(classes)]
    args += shlex.split(train_args or "")
    if subprocess.run(args, check=False).returncode != 0:
        raise ValueError(f"{run_name}: training failed (its output is above)")


def _last_checkpoint(root: Path) -> Path:
    found = sorted(root.rglob("last*.ckpt"))
    if not found:
        raise ValueError(f"no last checkpoint under {root}: the recipe's ModelCheckpoint "
                         "needs save_last: true")
    return max(found, key=lambda p: p.stat().st_mtime)


def _write_summary(folder: Path, rows: list[dict[str, Any]], strategies: list[Strategy],
                   name: str) -> Path:
    """JSON, CSV and the curve; the labels each strategy needs to match the other."""
    best = {s: max(r["IoU_macro"] for r in rows if r["strategy"] == s) for s in strategies}
    needs: dict[str, Any] = {}
    if len(strategies) == 2:
        target = min(best.values())  # a macro IoU both strategies reach
        needs = {"target_IoU_macro": target,
                 **{s: learning_curve_labels(rows, s, target) for s in strategies}}
    (folder / "active_learning.json").write_text(json.dumps(
        {"name": name, "rows": rows, "best_IoU_macro": best, "labels_to_reach": needs},
        indent=2, default=str))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (folder / "active_learning.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    plot_curve(rows, folder / "curve.png", f"{name}: test macro IoU against labels")
    print("| strategy | round | labels | test macro IoU | accuracy |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['round']} | {r['labels']} | {r['IoU_macro']:.3f} "
              f"| {r['accuracy']:.3f} |")
    if needs:
        print(f"labels to reach test macro IoU {needs['target_IoU_macro']:.3f}: "
              + ", ".join(f"{s} {needs[s]}" for s in strategies))
    print(f"wrote {folder / 'active_learning.json'}, active_learning.csv and curve.png")
    return folder
