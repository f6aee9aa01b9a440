"""The Bento: the model in BentoML's model store, and the service built around it.

:func:`save_model` copies an exported model folder (``model.onnx``, ``contract.json``,
``MODEL_CARD.md``) into the BentoML model store, where the Bento's ``CACAOMAP_MODEL``
(``bento:cacaomap:latest``) finds it. :func:`build_bento` builds the Bento from
``bentofile.yaml`` beside this module with the installed ``serving`` package as the build
context, so an installed package (no repository checkout) builds the same Bento as
``bentoml build`` at the repository root: ``serving/`` only, no torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import serving
from serving.inference.contract import (
    CARD_FILE,
    CONTRACT_FILE,
    ONNX_FILE,
    ModelContract,
    load_model_dir,
)

#: The Bento's build file (the repository root's ``bentofile.yaml`` links to it).
BENTOFILE = Path(__file__).with_name("bentofile.yaml")
#: Store name of the model the Bento serves (``models`` and ``CACAOMAP_MODEL`` in the
#: bentofile: ``cacaomap:latest``).
BENTO_MODEL = "cacaomap"


def save_model(model_dir: Path, contract: ModelContract | None = None,
               labels: dict[str, str] | None = None,
               metadata: dict[str, Any] | None = None, name: str | None = None) -> str:
    """Copy a checked model folder into the BentoML model store as ``<name>:<tag>``.

    Args:
        model_dir: An exported model folder.
        contract: Its contract (default: loaded and cross-checked from the folder).
        labels: BentoML labels (default: the contract's version).
        metadata: BentoML metadata (the ONNX sha256 is always added).
        name: Store name (default: the contract's model name).

    Returns:
        The store tag, e.g. ``cacaomap:abc123``.
    """
    if contract is None:
        contract = load_model_dir(model_dir)[1]
    import bentoml

    with bentoml.models.create(
        name or contract.name,
        labels=labels or {"version": contract.version},
        metadata={"onnx_sha256": contract.onnx_sha256, **(metadata or {})},
    ) as bento_model:
        for name in (ONNX_FILE, CONTRACT_FILE, CARD_FILE):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, Path(bento_model.path) / name)
    return str(bento_model.tag)


def build_bento(model_dir: Path | None = None) -> str:
    """Build the Bento (optionally saving ``model_dir`` to the store first).

    Returns:
        The Bento's tag, e.g. ``cacaomap:xyz``; ``bentoml serve <tag>`` serves it.
    """
    import bentoml

    if model_dir is not None:
        save_model(model_dir, name=BENTO_MODEL)
    build_ctx = Path(serving.__file__).resolve().parent.parent
    bento = bentoml.bentos.build_bentofile(str(BENTOFILE), build_ctx=str(build_ctx))
    return str(bento.tag)
