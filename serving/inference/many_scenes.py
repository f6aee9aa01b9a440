"""Many scenes: classify a folder or a list, in-process or fanned out to replicas.

Resumable: each output is named after the sha256 of its input scene's bytes and the
model's sha256 (``<stem>.<scene sha[:12]>.<model sha[:12]>.classes.tif``), so scenes
already done with the same model are skipped, and a renamed or edited scene is not
mistaken for a done one. Outputs are staged and renamed into place
(:func:`serving.files.staged`).
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from serving.files import sha256_file, staged
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


def output_path(scene: Path, out_dir: Path, model_sha: str) -> Path:
    """The content-addressed output name of a scene for a model."""
    return out_dir / f"{scene.stem}.{sha256_file(scene)[:12]}.{model_sha[:12]}.classes.tif"


def _post_scene(url: str, scene: Path, target: Path) -> None:
    import httpx

    with open(scene, "rb") as f:
        r = httpx.post(f"{url.rstrip('/')}/classify_scene", timeout=3600,
                       files={"scene": (scene.name, f, "image/tiff")})
    if r.status_code != 200:
        raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
    with staged(target) as tmp:
        tmp.write_bytes(r.content)


def classify_many(
    scenes: Sequence[Path], out_dir: Path, model_sha: str,
    classifier: TileClassifier | None = None, urls: Sequence[str] = (),
    progress: bool = True,
) -> BatchResult:
    """Classify scenes in-process (``classifier``) or through service replicas (``urls``).

    With several URLs, scenes go round-robin, one request in flight per replica.
    """
    if (classifier is None) == (not urls):
        raise ValueError("give either a classifier or at least one service URL")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BatchResult([], [], {})
    todo = []
    for scene in scenes:
        target = output_path(scene, out_dir, model_sha)
        if target.exists():
            result.skipped.append(scene)
        else:
            todo.append((scene, target))
    with Progress(disable=not progress) as bar:
        task = bar.add_task("classifying scenes", total=len(todo))
        if classifier is not None:
            for scene, target in todo:
                try:
                    classify_file(scene, target, classifier)
                    result.done.append(scene)
                except Exception as err:  # one bad scene must not stop the batch
                    result.failed[str(scene)] = str(err)
                bar.advance(task)
        else:
            replicas = itertools.cycle(urls)
            with cf.ThreadPoolExecutor(max_workers=len(urls)) as pool:
                futures = {pool.submit(_post_scene, next(replicas), scene, target): scene
                           for scene, target in todo}
                for future in cf.as_completed(futures):
                    scene = futures[future]
                    try:
                        future.result()
                        result.done.append(scene)
                    except Exception as err:
                        result.failed[str(scene)] = str(err)
                    bar.advance(task)
    return result
