"""Test-time augmentation: the same classes on a symmetric model, averaged views else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from serving.inference.contract import load_model_dir
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier
from serving.inference.tta import RUNS, transforms
from serving.settings import Settings, SettingsError
from tests.model_factory import LocalConvNet, SymmetricConvNet, write_local_model
from training.synthetic.spectra import S2_BANDS
from training.trainers.windowed import tta_logits

CLASSES = 6  # the default schema's channels, nodata included


@pytest.fixture(scope="module")
def symmetric(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = SymmetricConvNet(len(S2_BANDS), CLASSES)
    return write_local_model(tmp_path_factory.mktemp("sym") / "v1", tile_size=64,
                             overlap=16, net=net)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("plain") / "v1", tile_size=64,
                             overlap=16)


def _tiles(n: int = 3, seed: int = 0) -> np.ndarray:
    tiles = np.random.default_rng(seed).integers(1, 4000, (n, len(S2_BANDS), 64, 64))
    return tiles.astype(np.uint16)


def test_modes_are_the_symmetries_of_the_square_and_unknown_ones_are_refused() -> None:
    assert [len(transforms(m)) for m in ("none", "flips", "d4")] == [1, 4, 8]
    assert RUNS == {"none": 1, "flips": 4, "d4": 8}
    assert len(set(transforms("d4"))) == 8 and set(transforms("flips")) < set(transforms("d4"))
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rot'; use none"):
        transforms("rot")
    with pytest.raises(SettingsError, match="CACAOMAP_TTA must be one of none, flips, d4"):
        Settings.from_env({"CACAOMAP_TTA": "all"})
    assert Settings.from_env({"CACAOMAP_TTA": "d4"}).tta == "d4"


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_a_flip_invariant_model_gives_the_same_classes_with_tta(symmetric: Path,
                                                                mode: str) -> None:
    onnx, contract = load_model_dir(symmetric)
    without = TileClassifier(onnx, contract, tta="none")
    with_tta = TileClassifier(onnx, contract, tta=mode)
    tiles = _tiles()
    tiles[0, :, :5, :7] = 0  # unobserved pixels stay nodata
    np.testing.assert_allclose(with_tta.logits(tiles), without.logits(tiles), rtol=1e-4,
                               atol=1e-4)
    assert np.array_equal(with_tta.classify(tiles), without.classify(tiles))
    assert (with_tta.classify(tiles)[0, :5, :7] == contract.schema.nodata).all()


def test_tta_averages_the_views_of_a_model_that_is_not_symmetric(plain: Path) -> None:
    onnx, contract = load_model_dir(plain)
    without = TileClassifier(onnx, contract, tta="none")
    flips = TileClassifier(onnx, contract, tta="flips")
    tiles = _tiles(2, seed=1)
    x = tiles[..., ::-1].copy()  # the tile mirrored
    expected = (without.logits(tiles) + without.logits(tiles[..., ::-1, :])[..., ::-1, :]
                + without.logits(x)[..., ::-1]
                + without.logits(tiles[..., ::-1, ::-1])[..., ::-1, ::-1]) / 4
    got = flips.logits(tiles)
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[:, 1:], without.logits(tiles)[:, 1:], atol=1e-3)
    # The mirrored tile's answer is the mirrored answer: no orientation preferred.
    np.testing.assert_allclose(flips.logits(x)[..., ::-1][:, 1:], got[:, 1:], rtol=1e-5,
                               atol=1e-5)


def test_scenes_take_the_classifiers_tta(symmetric: Path, tmp_path: Path) -> None:
    data = _tiles(1, seed=2)[0][:, :150, :130].copy()
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=130, height=150,
                       count=len(S2_BANDS), dtype="uint16", nodata=0, crs="EPSG:32718",
                       transform=from_origin(333_000, 9_097_000, 10, 10)) as dst:
        dst.write(data)
    onnx, contract = load_model_dir(symmetric)
    maps = []
    for mode in ("none", "d4"):
        classify_file(scene, tmp_path / f"{mode}.tif", TileClassifier(onnx, contract,
                                                                      tta=mode))
        with rasterio.open(tmp_path / f"{mode}.tif") as src:
            maps.append(src.read(1))
    assert np.array_equal(maps[0], maps[1])


def test_the_trainers_windows_average_the_same_views() -> None:
    net = SymmetricConvNet(3, 4).eval()
    other = LocalConvNet(3, 4).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(net, x, "d4"), net(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(tta_logits(other, x, "d4"), other(x), atol=1e-3)
        flips = tta_logits(other, x, "flips")
        mirrored = tta_logits(other, torch.flip(x, (-1,)), "flips")
    torch.testing.assert_close(torch.flip(mirrored, (-1,)), flips, atol=1e-5, rtol=1e-5)
