"""Tile classification on ONNX Runtime.

Checks input against the contract, normalises, runs, and turns logits into class
probabilities with nodata kept as nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from serving.contract import ModelContract, load_model_dir
from serving.session import create_session

#: Model inputs are padded to a multiple of this (U-Net encoders downsample 32x).
SIZE_MULTIPLE = 32


class InputError(ValueError):
    """Input that does not match the model contract; the message names the mismatch."""


class TileClassifier:
    """A loaded model: contract + ONNX Runtime session."""

    def __init__(
        self, onnx_path: str | Path, contract: ModelContract,
        session: ort.InferenceSession | None = None,
    ) -> None:
        """Wrap a model file and its (already validated) contract."""
        self.contract = contract
        self.session = session or create_session(onnx_path)
        inputs = self.session.get_inputs()
        if inputs[0].name != contract.input_name:
            raise ValueError(f"ONNX input is {inputs[0].name!r}, contract says "
                             f"{contract.input_name!r}")
        self._mean = np.asarray(contract.mean, np.float32)[None, :, None, None]
        self._inv_std = (1 / np.asarray(contract.std, np.float32))[None, :, None, None]
        self.num_classes = contract.schema.num_classes
        self.nodata_class = contract.schema.nodata

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> TileClassifier:
        """Load ``model.onnx`` + ``contract.json``, refusing an inconsistent pair."""
        onnx_path, contract = load_model_dir(model_dir)
        return cls(onnx_path, contract)

    @property
    def provider(self) -> str:
        """The execution provider in use."""
        return str(self.session.get_providers()[0])

    # ------------------------------------------------------------ validation
    def check_tiles(self, tiles: NDArray[np.generic], allow_nodata: bool = True) -> None:
        """Refuse tiles whose shape, band count, dtype or values break the contract.

        Raises:
            InputError: Naming the mismatch.
        """
        c = self.contract
        if not isinstance(tiles, np.ndarray):
            raise InputError("tiles must be a numeric array")
        if tiles.ndim != 4:
            raise InputError(
                f"tiles must be 4-D (N, bands, H, W); got {tiles.ndim}-D shape {tiles.shape}"
            )
        n, bands, h, w = tiles.shape
        if n == 0 or h == 0 or w == 0:
            raise InputError(f"tiles must not be empty; got shape {tiles.shape}")
        if bands != c.num_bands:
            raise InputError(
                f"expected {c.num_bands} bands ({', '.join(c.bands)}); got {bands}"
            )
        if tiles.dtype != np.dtype(c.input_dtype):
            raise InputError(f"expected dtype {c.input_dtype}; got {tiles.dtype}")
        if np.issubdtype(tiles.dtype, np.floating) and not np.isfinite(tiles).all():
            raise InputError("tiles contain NaN or Inf values")

    # ------------------------------------------------------------- inference
    def valid_mask(self, tiles: NDArray[np.generic]) -> NDArray[np.bool_]:
        """(N, H, W): pixels observed in every band."""
        valid = np.ones((tiles.shape[0], *tiles.shape[2:]), bool)
        if np.issubdtype(tiles.dtype, np.floating):
            valid &= np.isfinite(tiles).all(axis=1)
        nodata = self.contract.image_nodata
        if nodata is not None:
            # Band by band: a strided reduction over axis 1 is several times slower.
            unobserved = tiles[:, 0] == nodata
            for band in range(1, tiles.shape[1]):
                unobserved &= tiles[:, band] == nodata
            valid &= ~unobserved
        return valid

    def logits(self, tiles: NDArray[np.generic],
               valid: NDArray[np.bool_] | None = None) -> NDArray[np.float32]:
        """Model logits (N, classes, H, W); the nodata channel is -inf.

        Invalid input pixels are filled with the band mean before the model sees them
        (as in training); tiles are padded to a multiple of 32 and cropped back.
        """
        if valid is None:
            valid = self.valid_mask(tiles)
        x = tiles.astype(np.float32)
        x -= self._mean
        x *= self._inv_std
        if not valid.all():
            x *= valid[:, None]  # 0 = the band mean
        h, w = x.shape[2:]
        ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))  # 0 = the band mean
        (out,) = self.session.run(None, {self.contract.input_name: x})
        out = out[:, :, :h, :w]
        out[:, self.nodata_class] = -np.inf
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
        self.check_tiles(tiles)
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
