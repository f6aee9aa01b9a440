"""Fixed-shape runs through IO binding give what ``session.run`` gives (on the CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.inference.contract import load_model_dir
from serving.inference.fixed_shape_runner import batch_sizes
from serving.inference.tiles import TileClassifier
from tests.model_factory import write_local_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("bound") / "v1", tile_size=32,
                             overlap=8)


def test_batch_sizes_are_powers_of_two_up_to_the_largest() -> None:
    assert batch_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert batch_sizes(12) == [1, 2, 4, 8, 12]
    assert batch_sizes(1) == [1]


def test_bound_fixed_shapes_give_the_same_logits_and_classes(model_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("CACAOMAP_MAX_BATCH_SIZE", "8")
    from serving import settings

    settings.current.cache_clear()
    try:
        onnx, contract = load_model_dir(model_dir)
        plain = TileClassifier(onnx, contract, fixed_shapes=False)
        bound = TileClassifier(onnx, contract, fixed_shapes=True)
    finally:
        settings.current.cache_clear()
    assert plain.runner is None and bound.runner is not None
    assert bound.runner.sizes == [1, 2, 4, 8] and bound.runner.device == "cpu"
    rng = np.random.default_rng(0)
    for n in (1, 3, 8, 19):  # one, a padded batch, a full one, chunks and a remainder
        tiles = rng.integers(1, 4000, (n, 10, 32, 32)).astype(np.uint16)
        tiles[0, :, :4, :4] = 0
        np.testing.assert_allclose(bound.logits(tiles), plain.logits(tiles), rtol=1e-5,
                                   atol=1e-5)
        assert np.array_equal(bound.classify(tiles), plain.classify(tiles))
    assert sorted(bound.runner.bound) == [1, 4, 8]  # bound once each, then reused
    # Other sides are not bound: they run as before.
    odd = rng.integers(1, 4000, (2, 10, 48, 48)).astype(np.uint16)
    assert np.array_equal(bound.classify(odd), plain.classify(odd))
    assert sorted(bound.runner.bound) == [1, 4, 8]
