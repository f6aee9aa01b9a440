"""Tile classification on ONNX Runtime.

Checks input against the contract, normalises, runs, and turns logits into class
probabilities with nodata kept as nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from serving.inference.contract import ModelContract, load_model_dir
from serving.inference.fixed_shape_runner import FIXED_SHAPE_PROVIDERS, FixedShapeRunner
from serving.inference.session import create_session
from serving.inference.tta import TTA, transforms
from serving.inference.tta import averaged_logits as tta_logits
from serving.inference.validity import (
    is_floating,
    observed,
    observed_by_sensor,
    sensor_groups,
)
from serving.settings import current


class InputError(ValueError):
    """Input that does not match the model contract; the message names the mismatch."""


def check_tiles(tiles: NDArray[np.generic], contract: ModelContract,
                tile_size: int | None = None, exact_dtype: bool = True) -> None:
    """Refuse tiles whose shape, band count, dtype or values break the contract.

    The one check of tiles, for in-process callers and for HTTP payloads
    (:mod:`serving.http.tile_payload` converts a payload, then calls this).

    Args:
        tiles: (N, bands, H, W).
        contract: The model's contract.
        tile_size: Required H and W (None: any size; scene windows may be smaller).
        exact_dtype: Require the contract's dtype (False: any numeric dtype, for
            payloads that are range-checked and cast afterwards).

    Raises:
        InputError: Naming the mismatch.
    """
    if not isinstance(tiles, np.ndarray):
        raise InputError("tiles must be a numeric array")
    side = f"{tile_size}, {tile_size}" if tile_size else "H, W"
    n_bands = contract.num_bands
    if (tiles.ndim != 4 or tiles.shape[1] != n_bands or 0 in tiles.shape
            or (tile_size is not None and tiles.shape[2:] != (tile_size, tile_size))):
        raise InputError(f"tiles must be 4-D, of shape (N, {n_bands}, {side}) for bands "
                         f"{', '.join(contract.bands)}; got {tiles.shape}")
    if not (np.issubdtype(tiles.dtype, np.number) or tiles.dtype == bool):
        raise InputError(f"tiles must be numbers; got {tiles.dtype}")
    if exact_dtype and tiles.dtype != np.dtype(contract.input_dtype):
        raise InputError(f"expected dtype {contract.input_dtype}; got {tiles.dtype}")
    if is_floating(tiles) and not np.isfinite(tiles).all():
        raise InputError("tiles contain NaN or Inf values")


class TileClassifier:
    """A loaded model: contract + ONNX Runtime session."""

    def __init__(
        self, onnx_path: str | Path, contract: ModelContract,
        session: ort.InferenceSession | None = None, fixed_shapes: bool | None = None,
        tta: TTA | None = None,
    ) -> None:
        """Wrap a model file and its (already validated) contract.

        Args:
            onnx_path: The model file.
            contract: Its contract.
            session: A session to use (default: :func:`create_session`).
            fixed_shapes: Run tiles of the contract's size through bound buffers of a
                few fixed shapes (:mod:`serving.inference.fixed_shape_runner`); default: on
                CUDA and TensorRT, where a new shape is planned again.
            tta: Test-time augmentation (:mod:`serving.inference.tta`): logits
                averaged over ``flips`` (4 runs) or the eight ``d4`` symmetries;
                default: the ``CACAOMAP_TTA`` setting (``none``).
        """
        self.contract = contract
        mode = current().tta if tta is None else tta
        transforms(mode)  # an unknown mode is refused here, not at the first tile
        self.tta: TTA = mode  # type: ignore[assignment]  # checked just above
        self.session = session or create_session(onnx_path)
        inputs = self.session.get_inputs()
        if inputs[0].name != contract.input_name:
            raise ValueError(f"ONNX input is {inputs[0].name!r}, contract says "
                             f"{contract.input_name!r}")
        self._groups = sensor_groups(contract.bands)
        self._mean = np.asarray(contract.mean, np.float32)[None, :, None, None]
        self._inv_std = (1 / np.asarray(contract.std, np.float32))[None, :, None, None]
        self.num_classes = contract.schema.num_classes
        self.nodata_class = contract.schema.nodata
        if fixed_shapes is None:
            fixed_shapes = self.provider in FIXED_SHAPE_PROVIDERS
        self.runner: FixedShapeRunner | None = None
        if fixed_shapes:
            side = contract.tile_size + (-contract.tile_size) % contract.size_multiple
            self.runner = FixedShapeRunner(
                self.session, contract.input_name, self.session.get_outputs()[0].name,
                contract.num_bands, self.num_classes, side, current().max_batch_size)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> TileClassifier:
        """Load ``model.onnx`` + ``contract.json``, refusing an inconsistent pair."""
        onnx_path, contract = load_model_dir(model_dir)
        return cls(onnx_path, contract)

    @property
    def provider(self) -> str:
        """The execution provider in use."""
        return str(self.session.get_providers()[0])

    # ------------------------------------------------------------- inference
    def valid_mask(self, tiles: NDArray[np.generic]) -> NDArray[np.bool_]:
        """(N, H, W): pixels observed (:func:`serving.inference.validity.observed`)."""
        return np.asarray(observed(tiles, self.contract.image_nodata), bool)

    def model_input(self, tiles: NDArray[np.generic],
                    valid: NDArray[np.bool_] | None = None) -> NDArray[np.float32]:
        """What the ONNX graph is given for raw ``tiles``: normalised, filled, padded.

        Invalid input pixels are filled with the band mean (as in training) and the
        tiles are padded with it to a multiple of the contract's ``size_multiple``. With
        optical and radar bands, each sensor's bands are also filled where that sensor
        alone saw nothing (a pixel under cloud keeps its radar bands).
        """
        if valid is None:
            valid = self.valid_mask(tiles)
        x = tiles.astype(np.float32)
        x -= self._mean
        x *= self._inv_std
        if not valid.all():
            np.copyto(x, np.float32(0), where=~valid[:, None])  # 0 = the band mean
        if len(self._groups) > 1:
            for group, seen in zip(self._groups, observed_by_sensor(
                    tiles, self.contract.image_nodata, self._groups), strict=True):
                if not seen.all():
                    view = x[:, group]
                    np.copyto(view, np.float32(0), where=~np.asarray(seen, bool)[:, None])
                    x[:, group] = view
        h, w = x.shape[2:]
        multiple = self.contract.size_multiple
        ph, pw = (-h) % multiple, (-w) % multiple
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))  # 0 = the band mean
        return x

    def logits(self, tiles: NDArray[np.generic],
               valid: NDArray[np.bool_] | None = None) -> NDArray[np.float32]:
        """Model logits (N, classes, H, W); the nodata channel is -inf.

        The graph runs on :meth:`model_input` (padded) and is cropped back.
        """
        h, w = tiles.shape[2:]
        x = self.model_input(tiles, valid)
        out = tta_logits(self._run, x, self.tta)[:, :, :h, :w]
        out[:, self.nodata_class] = -np.inf
        return np.asarray(out, np.float32)

    def _run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The graph's logits for a model input (bound fixed shapes where they fit)."""
        if self.runner is not None and self.runner.accepts(x):
            return self.runner.run(x)
        (out,) = self.session.run(None, {self.contract.input_name: x})
        return np.asarray(out, np.float32)

    def probabilities(self, tiles: NDArray[np.generic]) -> NDArray[np.float32]:
        """Softmax class probabilities (N, classes, H, W) over the observed classes.

        The nodata channel gets probability 0 everywhere.
        """
        probs = self.logits(tiles)
        # Reductions over the class axis plane by plane (strided ones are slow).
        top = probs[:, 0].copy()
        for code in range(1, probs.shape[1]):
            np.maximum(top, probs[:, code], out=top)
        probs -= top[:, None]
        np.exp(probs, out=probs)
        total = probs[:, 0].copy()
        for code in range(1, probs.shape[1]):
            total += probs[:, code]
        probs *= (1 / total)[:, None]
        return probs

    def classify(self, tiles: NDArray[np.generic]) -> NDArray[np.uint8]:
        """Class codes (N, H, W); nodata where any input pixel is unobserved.

        The argmax of the logits (the softmax would not change it), taken class by
        class over whole planes: the first class wins ties, as with ``np.argmax``,
        which is several times slower over a non-last axis.
        """
        check_tiles(tiles, self.contract)
        valid = self.valid_mask(tiles)
        logits = self.logits(tiles, valid)
        best = logits[:, 0].copy()
        classes = np.zeros(best.shape, np.uint8)
        for code in range(1, logits.shape[1]):
            higher = logits[:, code] > best
            np.copyto(best, logits[:, code], where=higher)
            np.copyto(classes, np.uint8(code), where=higher)
        np.copyto(classes, np.uint8(self.nodata_class), where=~valid)
        return classes
