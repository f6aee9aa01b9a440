"""Many scenes: classify a folder or a list as dask tasks, in-process or via the service.

Each scene is one task, on the local threaded scheduler (``workers`` in flight) or on a
``dask.distributed`` cluster (its workers are the concurrency). Through the service,
every task posts to one URL: replicas sit behind a load balancer there.

Resumable: each output is named after the sha256 of its input scene's bytes and the
model's sha256 (``<stem>.<scene sha[:12]>.<model sha[:12]>.classes.tif``), so scenes
already done with the same model are skipped, and a renamed or edited scene is not
mistaken for a done one. Outputs are staged and renamed into place
(:func:`serving.files.staged`). Offline, each class map gets its confidence COG beside
it (:func:`serving.inference.confidence.confidence_path`), written before the map.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from serving.files import sha256_file, staged
from serving.inference.confidence import confidence_path
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier


@dataclass
class BatchResult:
    """What happened to each scene."""

    done: list[Path]
    skipped: list[Path]
    failed: dict[str, str]


def scene_list(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand scene files, folders and .txt lists (a path per line) into scenes.

    Folders contribute their ``*.tif`` and ``*.tiff`` files, recursively.
    """
    scenes: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() == ".txt" and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            scenes.update(scene_list([ln.strip() for ln in lines if ln.strip()]))
        elif path.is_dir():
            scenes.update(p for p in path.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
        elif path.is_file():
            scenes.add(path)
        else:
            raise FileNotFoundError(f"no such scene or folder: {path}")
    return sorted(scenes)


def output_path(scene: Path, out_dir: Path, model_sha: str, tta: str = "none") -> Path:
    """The content-addressed output name of a scene for a model (and its TTA mode)."""
    mode = "" if tta == "none" else f".tta-{tta}"
    return out_dir / (f"{scene.stem}.{sha256_file(scene)[:12]}.{model_sha[:12]}{mode}"
                      ".classes.tif")


def _post_scene(url: str, scene: Path, target: Path, token: str | None = None) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with open(scene, "rb") as f:
        r = httpx.post(f"{url.rstrip('/')}/classify_scene", timeout=3600, headers=headers,
                       files={"scene": (scene.name, f, "image/tiff")})
    if r.status_code != 200:
        raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
    with staged(target) as tmp:
        tmp.write_bytes(r.content)


@functools.lru_cache(maxsize=2)
def cached_classifier(model_dir: str) -> TileClassifier:
    """One classifier (ONNX session) per model per worker process, reused by its tasks."""
    return TileClassifier.from_model_dir(Path(model_dir))


def classify_one(scene: Path, target: Path, model_dir: str | None, url: str | None,
                 token: str | None = None) -> tuple[str, str | None]:
    """One dask task: classify a scene in-process or through the service.

    Returns:
        (scene, None) when done, (scene, why) when it failed: one bad scene must not
        stop the batch.
    """
    try:
        if url is not None:
            _post_scene(url, scene, target, token)
        else:
            classify_file(scene, target, cached_classifier(str(model_dir)),
                          confidence=confidence_path(target))
    except Exception as err:
        return str(scene), str(err) or type(err).__name__
    return str(scene), None


def classify_many(
    scenes: Sequence[Path], out_dir: Path, model_sha: str, *,
    model_dir: Path | None = None, url: str | None = None, workers: int = 1,
    scheduler: str | None = None, progress: bool = True, tta: str = "none",
    token: str | None = None,
) -> BatchResult:
    """Classify scenes as dask tasks, in-process (``model_dir``) or through ``url``.

    Args:
        scenes: Scene files.
        out_dir: Output folder (content-addressed names; done scenes are skipped).
        model_sha: sha256 of the ONNX model (in the output names).
        model_dir: Model folder for in-process classification.
        url: One service URL (replicas sit behind a load balancer at this URL).
        workers: Scenes in flight with the local scheduler (threads).
        scheduler: A ``dask.distributed`` scheduler address; its workers are the
            concurrency (the scenes and the model must be on paths they can read).
        progress: Show a progress bar.
        tta: The test-time augmentation the maps are made with (``CACAOMAP_TTA`` of
            this process or of the service), in the output names.
        token: The service's bearer token (with ``url``).
    """
    import dask

    if (model_dir is None) == (url is None):
        raise ValueError("give either a model folder or one service URL")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BatchResult([], [], {})
    tasks = []
    for scene in scenes:
        target = output_path(scene, out_dir, model_sha, tta)
        if target.exists():
            result.skipped.append(scene)
        else:
            tasks.append(dask.delayed(classify_one, pure=False)(
                scene, target, str(model_dir) if model_dir else None, url, token))

    def record(outcome: tuple[str, str | None]) -> None:
        scene, error = outcome
        if error is None:
            result.done.append(Path(scene))
        else:
            result.failed[scene] = error

    with Progress(disable=not progress) as bar:
        task = bar.add_task("classifying scenes", total=len(tasks))
        if scheduler:
            from distributed import Client, as_completed

            with Client(scheduler) as client:
                for future in as_completed(client.compute(tasks)):
                    record(future.result())
                    bar.advance(task)
        elif tasks:
            for outcome in dask.compute(*tasks, scheduler="threads",
                                        num_workers=max(1, workers)):
                record(outcome)
            bar.update(task, completed=len(tasks))
    return result
