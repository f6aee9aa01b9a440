"""Training patches placed at sparse labelled points: every patch holds a label."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import torch

from training.data.datamodule import LandCoverDataModule

DATA = Path("tests/data/rondonia")


def _module(patches_at: str, length: int = 64) -> LandCoverDataModule:
    return LandCoverDataModule(
        images=str(DATA / "LC08_232066_20190727.tif"), labels=str(DATA / "endmembers.shp"),
        label_kind="vector", label_map={1: 3, 2: 3, 3: 1, 4: 2},
        classes=str(DATA / "classes.yaml"), all_bands=["B2", "B3", "B4", "B5", "B6", "B7"],
        image_glob="LC08_*.tif", label_glob="endmembers.shp", filename_regex=".*",
        image_nodata=-9999, block_size=48, patch_size=48, batch_size=8, length=length,
        patches_at=patches_at)


def test_patches_at_labels_each_hold_a_labelled_point_of_the_training_split() -> None:
    torch.manual_seed(0)
    dm = _module("labels")
    dm.setup("fit")
    train = dm.train_dataset
    ground = shapely.union_all(list(train.index.geometry))
    points = gpd.read_file(DATA / "endmembers.shp").geometry
    inside = int(shapely.contains_xy(ground, points.x.values, points.y.values).sum())
    assert dm.train_sampler.points == inside > 0  # points of the training split only
    queries = list(dm.train_sampler)
    assert len(queries) == 64
    for query in queries:
        sample = train[query]
        assert sample["mask"].shape[-2:] == (48, 48)
        assert int((sample["mask"] > 0).sum()) >= 1
        x, y = query[0], query[1]
        assert ground.buffer(1e-6).contains(shapely.box(x.start, y.start, x.stop, y.stop))


def test_patches_anywhere_mostly_miss_sparse_points() -> None:
    torch.manual_seed(0)
    dm = _module("anywhere", length=64)
    dm.setup("fit")
    held = sum(int((dm.train_dataset[q]["mask"] > 0).any()) for q in dm.train_sampler)
    assert held < 48  # why patches_at: labels exists


def test_patches_at_labels_needs_vector_labels() -> None:
    dm = LandCoverDataModule(images="x", labels="y", patches_at="labels")
    with pytest.raises(ValueError, match="patches_at: labels needs label_kind: vector"):
        dm._train_sampler(None, 32)  # type: ignore[arg-type]
