from pathlib import Path

import pytest
import shapely

from training.data.datamodule import LandCoverDataModule
from training.data.splits import assign_blocks


def test_blocks_cover_and_do_not_overlap() -> None:
    a = assign_blocks((0, 0, 1000, 800), 100, (0.6, 0.2, 0.2), seed=1)
    assert len(a.blocks) == 80
    assert {0, 1, 2} == set(a.split)
    splits = [a.geometry(s) for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert shapely.intersection(splits[i], splits[j]).area == 0
    assert shapely.union_all(splits).area == pytest.approx(1000 * 800)


def test_too_few_blocks_is_an_error() -> None:
    with pytest.raises(ValueError, match="smaller block_size"):
        assign_blocks((0, 0, 100, 100), 100, (0.6, 0.2, 0.2), seed=0)


def test_split_is_by_location_across_dates(landscape: Path) -> None:
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"), block_size=64)
    dm.setup("fit")
    geoms = {}
    for name, ds in zip(("train", "val", "test"),
                        (dm.train_dataset, dm.val_dataset, dm.test_dataset), strict=True):
        assert len(ds.index) > 0
        # both dates present in every split, on the same ground
        assert ds.index.index.left.nunique() == 2
        geoms[name] = shapely.union_all(list(ds.index.geometry))
    assert shapely.intersection(geoms["train"], geoms["test"]).area == 0
    assert shapely.intersection(geoms["train"], geoms["val"]).area == 0
    assert shapely.intersection(geoms["val"], geoms["test"]).area == 0
