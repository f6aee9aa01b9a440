"""Where a served model comes from: a models/ folder or the BentoML model store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from serving.inference.contract import CONTRACT_FILE, ContractError
from serving.settings import current

DEFAULT_NAME = "cacaomap"


def default_models_dir(env: Mapping[str, str] | None = None,
                       checkout: Path | None = None) -> Path:
    """The default root of exported model folders (``models/README.md`` says more).

    Always absolute, so that the working directory never decides which model is served
    (a ``models/v999`` planted where the service happens to start is not read): the
    repository's committed ``models/`` folder when the package runs from a checkout;
    elsewhere (an installed package) ``$XDG_DATA_HOME/cacaomap/models`` (by default
    ``~/.local/share/cacaomap/models``). A Bento serves from the BentoML store.

    Args:
        env: The environment to read ``XDG_DATA_HOME`` and ``HOME`` from (default: ours).
        checkout: The checkout's ``models/`` (default: beside this package).
    """
    checkout = checkout or Path(__file__).resolve().parents[2] / "models"
    if (checkout / "README.md").is_file():
        return checkout
    env = os.environ if env is None else env
    data = env.get("XDG_DATA_HOME", "")
    base = Path(data) if data and Path(data).is_absolute() else \
        Path(env.get("HOME") or Path.home()) / ".local" / "share"
    return (base / "cacaomap" / "models").absolute()


#: Default root of exported model folders: ``models/<name>/v<N>/``.
MODELS_DIR = default_models_dir()


def newest_version(root: Path) -> Path:
    """The highest ``v<N>`` folder under ``root``.

    Raises:
        ContractError: If there is none.
    """
    versions = [p for p in root.glob("v*") if p.name[1:].isdigit() and p.is_dir()]
    if not versions:
        raise ContractError(f"no exported model under {root} (run `cacaomap model export`)")
    return max(versions, key=lambda p: int(p.name[1:]))


def check_pinned(folder: Path, pinned: str | None = None) -> Path:
    """``folder`` if its model hashes to the pinned sha256 (``CACAOMAP_MODEL_SHA256``).

    Raises:
        ContractError: Naming both hashes when they differ.
    """
    from serving.files import sha256_file

    pinned = (pinned if pinned is not None else current().model_sha256).lower()
    if pinned:
        actual = sha256_file(folder / "model.onnx")
        if actual != pinned:
            raise ContractError(f"the model at {folder} has sha256 {actual[:12]}…, not the "
                                f"pinned CACAOMAP_MODEL_SHA256 {pinned[:12]}…")
    return folder


def resolve_model_dir(model: str | Path | None = None) -> Path:
    """Resolve a model reference to a folder holding model.onnx + contract.json.

    Accepted: a model folder; a models/<name> folder (its newest version); a BentoML
    store tag ``bento:<name>[:<version>]``; or None, then ``CACAOMAP_MODEL``, else the
    newest ``models/cacaomap/v<N>``, else (a built Bento served from the store, outside
    any checkout) ``cacaomap:latest`` from the BentoML model store. With
    ``CACAOMAP_MODEL_SHA256`` set, a model of another sha256 is refused.
    """
    return check_pinned(_resolve(model))


def _resolve(model: str | Path | None) -> Path:
    ref = str(model) if model is not None else current().model
    if ref.startswith("bento:"):
        return _from_bento_store(ref.removeprefix("bento:"))
    path = Path(ref) if ref else MODELS_DIR / DEFAULT_NAME
    if (path / CONTRACT_FILE).is_file() or (path / "model.onnx").is_file():
        return path
    if path.is_dir():
        return newest_version(path)
    if not ref:
        try:
            return _from_bento_store(f"{DEFAULT_NAME}:latest")
        except ContractError:
            pass
    raise ContractError(f"model {path} does not exist")


def _from_bento_store(tag: str) -> Path:
    """The folder of a model in the BentoML model store."""
    import bentoml

    try:
        return Path(bentoml.models.get(tag).path)
    except bentoml.exceptions.NotFound as err:
        raise ContractError(f"no model {tag!r} in the BentoML store") from err
