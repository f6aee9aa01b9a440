"""The ``tiles`` payload of ``/classify_tiles``: nested lists or base64 binary.

Two JSON forms are accepted for the same (N, bands, tile, tile) array:

- **lists**: ``{"tiles": [[[[...]]]]}``, the form BentoML's schema describes. Easy to
  write by hand, but a 256-px, 10-band tile is 655,360 JSON numbers: parsing them and
  building the array costs ~0.3 s per tile on one core, more than inference.
- **binary**: ``{"tiles": {"dtype": "uint16", "shape": [N, bands, tile, tile],
  "data": "<base64>"}}``, the array's bytes in C order, little-endian
  (:func:`encode_tiles` builds it). Decoding costs ~10 ms per tile.

Either form is checked before BentoML casts or reshapes anything
(:func:`tiles_from_payload`). BentoML's own client reads ``/schema.json``, where
``tiles`` is published as a numpy tensor (:data:`CLIENT_SCHEMA`): it sends an array as
lists; :class:`serving.client.CacaoMapClient` sends it in the binary form. This module
needs only numpy (a client imports it).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from serving.inference.contract import ModelContract

#: Keys of the binary form.
BINARY_KEYS = frozenset({"dtype", "shape", "data"})

#: JSON schema of the binary form (published in /docs.json beside the list form).
BINARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Binary tiles",
    "description": "The (N, bands, tile, tile) array's bytes, C order, little-endian, "
                   "base64-encoded.",
    "required": ["dtype", "shape", "data"],
    "additionalProperties": False,
    "properties": {
        "dtype": {"type": "string", "description": "numpy dtype name, e.g. uint16"},
        "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 4,
                  "maxItems": 4},
        "data": {"type": "string", "contentEncoding": "base64"},
    },
}


#: JSON schema of the list form (what BentoML would publish on its own).
LIST_SCHEMA: dict[str, Any] = {
    "type": "array", "description": "(N, bands, tile, tile) numbers",
    "items": {"type": "array", "items": {"type": "array", "items": {
        "type": "array", "items": {"type": "number"}}}},
}

#: The published schema of ``tiles`` (OpenAPI, ``/docs.json``): either form.
TILES_SCHEMA: dict[str, Any] = {"title": "Tiles", "anyOf": [LIST_SCHEMA, BINARY_SCHEMA]}

#: What BentoML's client reads in ``/schema.json``: a numpy tensor, which it turns into
#: lists (BentoML's client otherwise hands a numpy array to ``json.dumps``, which fails).
CLIENT_SCHEMA: dict[str, Any] = {
    "title": "Tiles", "type": "tensor", "format": "numpy-array",
    "description": "(N, bands, tile, tile) array of the model's input dtype (GET /model)"}


def encode_tiles(tiles: NDArray[np.generic]) -> dict[str, Any]:
    """The binary form of ``tiles`` (what a client sends as ``{"tiles": ...}``)."""
    arr = np.ascontiguousarray(tiles)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {"dtype": arr.dtype.name, "shape": list(arr.shape),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def decode_tiles(payload: dict[str, Any], expected_dtype: str) -> NDArray[np.generic]:
    """The array of a binary payload.

    Raises:
        ValueError: Naming what is wrong (keys, dtype, shape, base64, byte count).
    """
    if set(payload) != BINARY_KEYS:
        raise ValueError(f"binary tiles need exactly the keys dtype, shape and data "
                         f"(base64); got {sorted(map(str, payload))}")
    dtype, shape, data = payload["dtype"], payload["shape"], payload["data"]
    if dtype != expected_dtype:
        raise ValueError(f"expected dtype {expected_dtype}; got {dtype!r}")
    if (not isinstance(shape, list) or len(shape) != 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                       for s in shape)):
        raise ValueError(f"binary tiles need shape [N, bands, tile, tile] of positive "
                         f"integers; got {shape!r}")
    if not isinstance(data, str):
        raise ValueError("binary tiles need data as a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"tiles data is not valid base64: {err}") from err
    little = np.dtype(expected_dtype).newbyteorder("<")
    expected = int(np.prod(shape)) * little.itemsize
    if len(raw) != expected:
        raise ValueError(f"tiles data is {len(raw):,} bytes; shape {shape} of "
                         f"{expected_dtype} needs {expected:,}")
    arr = np.frombuffer(raw, dtype=little).reshape(shape)
    return arr.astype(np.dtype(expected_dtype), copy=False)


def tiles_from_payload(value: Any, contract: ModelContract) -> NDArray[np.generic]:
    """The tiles of a payload as sent, checked before any cast or reshape.

    BentoML's own ndarray conversion casts to the dtype and reshapes to the declared
    shape; a (4, 10, 32, 32) payload would silently become one (1, 10, 64, 64) tile.
    This runs first and refuses anything that is not exactly (N, bands, tile, tile) of
    in-range, finite numbers (integers for integer dtypes), by
    :func:`serving.inference.tiles.check_tiles`.

    Returns:
        The tiles as an array of the contract's dtype (BentoML does not convert again).

    Raises:
        ValueError: Naming the problem (BentoML answers 400 with it).
    """
    from serving.inference.tiles import check_tiles

    if isinstance(value, dict):
        value = decode_tiles(value, contract.input_dtype)
    try:
        arr = np.asarray(value)
    except ValueError as err:
        raise ValueError(f"tiles are ragged (not one rectangular array): {err}") from err
    if arr.dtype == object:
        raise ValueError("tiles are ragged (not one rectangular array)")
    check_tiles(arr, contract, contract.tile_size, exact_dtype=isinstance(value, np.ndarray))
    target = np.dtype(contract.input_dtype)
    if np.issubdtype(target, np.integer) and arr.dtype != target:
        if not np.issubdtype(arr.dtype, np.integer) and not (arr == np.round(arr)).all():
            raise ValueError(f"expected integer {target} values; got fractions")
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"values outside the {target} range [{info.min}, {info.max}]")
    return arr.astype(target, copy=False)
