"""``cacaomap service``: run the BentoML service, or build its Bento."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cacaomap.grammar import CommandError
from serving.inference.model_store import MODELS_DIR


def run(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 3000,
    models_dir: Path = MODELS_DIR,
) -> None:
    """Serve a model over HTTP with BentoML (``serving.http.service:CacaoMap``).

    The service's settings are ``CACAOMAP_*`` environment variables (the store, the
    token, limits; see docs/service.md); this command sets ``CACAOMAP_MODEL`` and runs
    ``bentoml serve`` in its place.

    Args:
        model: A model folder, ``models:/<name>@<alias>`` from the MLflow registry
            (downloaded into models_dir), or ``bento:<name>:<version>``; default: the
            newest under models/cacaomap/.
        host: Address to bind (loopback by default).
        port: Port.
        models_dir: Where registered models are downloaded to.

    Writes:
        Nothing but a model downloaded from the registry into MODELS_DIR; the service
        writes its results under ``CACAOMAP_RESULTS_DIR``.

    Examples:
        cacaomap service run --model models/cacaomap/v2
        CACAOMAP_STORE=store/ cacaomap service run --model models:/cacaomap@champion
    """
    if model and model.startswith("models:/"):
        from mlflow.exceptions import MlflowException

        from training.export.registry import RegistryError, resolve_model_uri

        try:
            model = str(resolve_model_uri(model, models_dir))
        except (MlflowException, RegistryError) as err:
            raise CommandError(f"{model}: {err.message if hasattr(err, 'message') else err}"
                               ) from err
    elif model and not model.startswith("bento:"):
        from serving.inference.model_store import resolve_model_dir

        resolve_model_dir(model)  # a missing folder is one line here, not bentoml's
    env = os.environ | ({"CACAOMAP_MODEL": model} if model else {})
    os.execvpe(sys.executable, [sys.executable, "-m", "bentoml", "serve",
                                "serving.http.service:CacaoMap", "--host", host,
                                "--port", str(port)], env)


def bento(model: Path | None = None, gpu: bool = False) -> None:
    """Build the Bento (``serving/`` only, no torch) from this installation.

    The same Bento as ``bentoml build`` at the repository root, but built from the
    installed package, so it needs no checkout. Serve it with ``bentoml serve <tag>``.

    Args:
        model: A model folder to save into the BentoML model store first (the Bento
            serves ``cacaomap:latest`` from the store).
        gpu: The GPU Bento: onnxruntime-gpu, a CUDA base image, one GPU, and
            ``CACAOMAP_PROVIDERS=cuda`` (it refuses to start where CUDA is missing).

    Writes:
        A Bento ``cacaomap:<version>`` in the BentoML store (``$BENTOML_HOME``), and
        with ``--model`` that model as ``cacaomap:<version>`` in its model store.

    Examples:
        cacaomap service bento --model models/cacaomap/v2
        cacaomap service bento --model models/cacaomap/v2 --gpu
    """
    from serving.http.bento import build_bento

    print(f"built {'GPU ' if gpu else ''}Bento {build_bento(model, gpu=gpu)}")
