from pathlib import Path

import torch
from torchgeo.samplers import GridGeoSampler

from training.data.datamodule import LandCoverDataModule
from training.data.datasets import LabelRemap


def test_polygon_labels_give_the_raster_masks(landscape: Path) -> None:
    raster = LandCoverDataModule(images=str(landscape / "images"),
                                 labels=str(landscape / "labels")).build_dataset()
    vector = LandCoverDataModule(
        images=str(landscape / "images"), labels=str(landscape / "polygons"),
        label_kind="vector", label_glob="labels_*.gpkg",
    ).build_dataset()
    n = 0
    for query in GridGeoSampler(raster, 64, 64):
        a, b = raster[query]["mask"], vector[query]["mask"]
        assert torch.equal(a, b), f"masks differ at {query}"
        n += 1
    assert n == 2 * (256 // 64) ** 2


def test_label_remap_sends_unknown_codes_to_nodata() -> None:
    sample = {"mask": torch.tensor([[1, 2, 3, 4, 7]])}
    out = LabelRemap({1: 3, 2: 3, 3: 1, 4: 2})(sample)["mask"]
    assert out.tolist() == [[3, 3, 1, 2, 0]]


def test_statistics_ignore_nodata_and_use_train_blocks_only(landscape: Path) -> None:
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"), block_size=64,
                             patch_size=32)
    dm.setup("fit")
    dm.compute_statistics()
    assert dm.mean is not None and dm.std is not None
    assert dm.mean.shape == (10,)
    # Reflectance of vegetated land: B08 (NIR) well above B04 (red); nodata zeros
    # excluded so no band mean is dragged towards 0.
    assert dm.mean[6] > 2 * dm.mean[2]
    assert (dm.mean > 100).all()
    restored = LandCoverDataModule(images=str(landscape / "images"),
                                   labels=str(landscape / "labels"))
    restored.load_state_dict(dm.state_dict())
    assert torch.allclose(restored.mean, dm.mean)
