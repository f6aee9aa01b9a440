"""One rule for observed pixels, the same on NumPy arrays and torch tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serving.inference.validity import observed


def _image() -> np.ndarray:
    image = np.full((2, 3, 4, 5), 7.0, np.float32)
    image[0, :, 0, 0] = 0.0           # nodata in every band: unobserved
    image[0, 1, 0, 1] = 0.0           # nodata in one band only: observed
    image[0, 2, 1, 1] = np.nan        # NaN in one band: unobserved
    image[1, 0, 2, 2] = np.inf        # Inf in one band: unobserved
    return image


def test_nodata_in_every_band_and_non_finite_values_are_unobserved() -> None:
    mask = observed(_image(), nodata=0)
    assert mask.shape == (2, 4, 5) and mask.dtype == bool
    unobserved = {tuple(int(i) for i in idx) for idx in np.argwhere(~mask)}
    assert unobserved == {(0, 0, 0), (0, 1, 1), (1, 2, 2)}
    assert observed(_image(), nodata=None).sum() == mask.size - 2  # only NaN and Inf


@pytest.mark.parametrize("nodata", [0, None])
def test_numpy_and_torch_agree(nodata: float | None) -> None:
    image = _image()
    as_tensor = observed(torch.from_numpy(image), nodata)
    assert isinstance(as_tensor, torch.Tensor)
    assert np.array_equal(as_tensor.numpy(), observed(image, nodata))


def test_integer_imagery_is_masked_by_nodata_only() -> None:
    image = np.ones((3, 8, 8), np.uint16)
    image[:, 2, 3] = 65535
    mask = observed(image, nodata=65535)
    assert mask.sum() == 63 and not mask[2, 3]
