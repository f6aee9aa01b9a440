"""Scenes whose storage would make every window inflate whole strips are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from serving.inference.scene_checks import check_scene
from serving.inference.tiles import InputError, TileClassifier
from tests.model_factory import write_local_model


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> TileClassifier:
    model = write_local_model(tmp_path_factory.mktemp("layout") / "v1", tile_size=64,
                              overlap=16, pixel_size_m=10.0)
    return TileClassifier.from_model_dir(model)


def _scene(path: Path, **layout: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=1024, height=1024, count=10,
                       dtype="uint16", crs="EPSG:32718",
                       transform=from_origin(300000, 9100000, 10, 10), **layout) as dst:
        dst.write(np.full((10, 1024, 1024), 900, np.uint16))
    return path


@pytest.mark.parametrize(("layout", "refused"), [
    ({"tiled": False, "blockysize": 1024, "compress": "deflate", "interleave": "pixel"},
     True),   # one 20 MiB strip
    ({"tiled": False, "blockysize": 1024, "compress": "deflate", "interleave": "band"},
     False),  # 2 MiB a band
    ({"tiled": False, "blockysize": 1024, "interleave": "pixel"}, False),  # uncompressed
    ({"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}, False),
    ({"tiled": False, "blockysize": 16, "compress": "deflate", "interleave": "pixel"},
     False),  # GDAL's usual small strips
])
def test_huge_compressed_strips_are_refused(classifier: TileClassifier, tmp_path: Path,
                                            layout: dict, refused: bool) -> None:
    with rasterio.open(_scene(tmp_path / "s.tif", **layout)) as src:
        if refused:
            with pytest.raises(InputError, match=r"compressed strips of 1024 rows.*COG"):
                check_scene(src, classifier)
        else:
            check_scene(src, classifier)


def test_huge_compressed_tiles_are_refused_too(classifier: TileClassifier,
                                               tmp_path: Path) -> None:
    """Before, only strips were checked: tiles of 1024² x 10 bands (20 MiB) passed."""
    path = tmp_path / "big_tiles.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=2048, count=10,
                       dtype="uint16", crs="EPSG:32718", tiled=True, blockxsize=1024,
                       blockysize=1024, compress="deflate", interleave="pixel",
                       transform=from_origin(300000, 9100000, 10, 10)) as dst:
        dst.write(np.full((10, 2048, 2048), 900, np.uint16))
    with rasterio.open(path) as src, pytest.raises(
            InputError, match=r"compressed tiles of 1024 x 1024 px \(20 MiB"):
        check_scene(src, classifier)
