"""Checkpoints read without running code: torch's safe loader (``weights_only=True``).

A Lightning checkpoint of this project holds tensors and plain values only (its
hyperparameters, the data module's statistics as JSON text, loop and callback states),
so it loads with ``weights_only=True`` and no allow-list. A file that carries any other
object (a pickle whose loading would run code: anyone who can log an artifact to the
team's MLflow server could plant one) is refused with :class:`CheckpointError`,
naming the file, before anything of it runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely (or at all)."""


def load_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, unpickled by torch's safe loader, on the CPU.

    Raises:
        CheckpointError: For a missing file, or one holding objects other than tensors
            and plain values.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a checkpoint cacaomap loads: it holds objects "
                              f"other than tensors and plain values ({first[:200]})") from err
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path} is not a torch checkpoint ({err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint (a {type(state).__name__})")
    return state
