from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

from training.data.datamodule import LandCoverDataModule
from training.data.splits import (
    SplitError,
    assign_blocks,
    assign_files,
    block_size_in_crs_units,
)


def test_blocks_cover_and_do_not_overlap() -> None:
    a = assign_blocks([shapely.box(0, 0, 1000, 800)], (0, 0, 1000, 800), 100,
                      (0.6, 0.2, 0.2), seed=1)
    assert len(a.blocks) == 80
    assert {0, 1, 2} == set(a.split)
    splits = [a.geometry(s) for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert shapely.intersection(splits[i], splits[j]).area == 0
    assert shapely.union_all(splits).area == pytest.approx(1000 * 800)


def test_too_few_blocks_is_an_error() -> None:
    with pytest.raises(ValueError, match="smaller block_size"):
        assign_blocks([shapely.box(0, 0, 100, 100)], (0, 0, 100, 100), 100,
                      (0.6, 0.2, 0.2), seed=0)


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


# ------------------------------------------------ scattered chips (issue 15)
CHIPS = 30
CHIP_PX = 64
CHIP_RES = 0.0001  # degrees, about 11 m
#: A continent-sized extent in EPSG:4326 (28° x 16°, like Amazon chip sets).
EXTENT = (-78.0, -16.0, -50.0, 0.0)


def write_chips(root: Path, n: int = CHIPS, seed: int = 0) -> Path:
    """RGB uint8 chips with forest/non-forest label rasters on the same grids."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        west = rng.uniform(EXTENT[0], EXTENT[2] - 1)
        north = rng.uniform(EXTENT[1] + 1, EXTENT[3])
        transform = from_origin(west, north, CHIP_RES, CHIP_RES)
        profile = {"driver": "GTiff", "width": CHIP_PX, "height": CHIP_PX,
                   "crs": "EPSG:4326", "transform": transform}
        label = (rng.random((CHIP_PX, CHIP_PX)) > 0.5).astype("uint8") + 1
        image = rng.integers(1, 255, (3, CHIP_PX, CHIP_PX), dtype="uint8")
        with rasterio.open(root / "images" / f"chip_{i:02d}.tif", "w", count=3,
                           dtype="uint8", **profile) as dst:
            dst.write(image)
        with rasterio.open(root / "labels" / f"chip_{i:02d}.tif", "w", count=1,
                           dtype="uint8", **profile) as dst:
            dst.write(label, 1)
    return root


def chip_module(root: Path, **kwargs: object) -> LandCoverDataModule:
    return LandCoverDataModule(
        images=str(root / "images"), labels=str(root / "labels"),
        all_bands=["R", "G", "B"], image_glob="chip_*.tif", label_glob="chip_*.tif",
        filename_regex=r"^chip_(?P<chip>\d+)\.tif$", image_nodata=None, **kwargs)  # type: ignore[arg-type]


def splits_of(dm: LandCoverDataModule) -> dict[str, shapely.Geometry]:
    out = {}
    for name, ds in zip(("train", "val", "test"),
                        (dm.train_dataset, dm.val_dataset, dm.test_dataset), strict=True):
        assert len(ds.index) > 0, f"{name} is empty"
        out[name] = shapely.union_all(list(ds.index.geometry))
    return out


def assert_disjoint(geoms: dict[str, shapely.Geometry]) -> None:
    names = list(geoms)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert shapely.intersection(geoms[a], geoms[b]).area == 0, (a, b)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chips(tmp_path_factory.mktemp("chips"))


def test_blocks_are_made_only_where_scattered_chips_are(chips: Path) -> None:
    # 16 px blocks: the chips' bounding box holds about 10^8 of them; the old loop over
    # every block of the box hung here. Each chip touches at most 5 x 5 blocks.
    dm = chip_module(chips, block_size=16)
    dm.setup("fit")
    assert dm.assignment is not None
    assert 3 <= len(dm.assignment.blocks) <= CHIPS * 25
    geoms = splits_of(dm)
    assert_disjoint(geoms)
    chip_area = CHIPS * (CHIP_PX * CHIP_RES) ** 2
    # whole blocks only: every chip keeps its interior (edge blocks may fall outside
    # the grid's last whole row or column)
    assert sum(g.area for g in geoms.values()) >= 0.5 * chip_area


def test_split_by_file_keeps_each_chip_whole(chips: Path) -> None:
    dm = chip_module(chips, split_by="file", split_fractions=(0.6, 0.2, 0.2))
    dm.setup("fit")
    seen: dict[str, set[str]] = {}
    for name, ds in zip(("train", "val", "test"),
                        (dm.train_dataset, dm.val_dataset, dm.test_dataset), strict=True):
        for files in ds.index[["filepath_1", "filepath_2"]].itertuples(index=False):
            seen.setdefault(Path(files[0]).name, set()).add(name)
        full = shapely.union_all(list(ds.index.geometry)).area
        assert full == pytest.approx(len(ds.index) * (CHIP_PX * CHIP_RES) ** 2)
    assert len(seen) == CHIPS
    assert all(len(s) == 1 for s in seen.values()), "a chip is in two splits"
    counts = {n: sum(n in s for s in seen.values()) for n in ("train", "val", "test")}
    assert counts == {"train": 18, "val": 6, "test": 6}


def test_overlapping_footprints_are_one_unit() -> None:
    import geopandas as gpd

    a, b = shapely.box(0, 0, 10, 10), shapely.box(5, 5, 15, 15)  # overlap
    rest = [shapely.box(100 + 20 * i, 0, 110 + 20 * i, 10) for i in range(4)]
    index = gpd.GeoDataFrame(geometry=[a, b, *rest], crs="EPSG:32718")
    assignment = assign_files(index, (0.5, 0.25, 0.25), seed=0)
    assert len(assignment.blocks) == 5
    assert shapely.union_all([a, b]).equals(
        next(g for g in assignment.blocks if g.intersects(a)))


def test_block_size_in_metres_in_a_geographic_crs() -> None:
    # 1 km at 60° S is about 0.009° of latitude and twice that of longitude
    width, height = block_size_in_crs_units(
        1000, CRS.from_epsg(4326), (-70.0, -61.0, -69.0, -59.0))
    assert height == pytest.approx(1000 / 111_320)
    assert width == pytest.approx(2 * height, rel=1e-3)
    assert block_size_in_crs_units(1000, CRS.from_epsg(32718), (0, 0, 1, 1)) == (1000, 1000)
    # US survey feet
    assert block_size_in_crs_units(1000, CRS.from_epsg(2263), (0, 0, 1, 1))[0] == \
        pytest.approx(1000 / 0.3048006096, rel=1e-6)


def test_block_size_m_splits_degree_chips_like_projected_ones(chips: Path) -> None:
    dm = chip_module(chips, block_size_m=2 * CHIP_PX * CHIP_RES * 111_320 / 4)
    dm.setup("fit")
    assert dm.assignment is not None
    w, h = (dm.assignment.blocks[0].bounds[2] - dm.assignment.blocks[0].bounds[0],
            dm.assignment.blocks[0].bounds[3] - dm.assignment.blocks[0].bounds[1])
    assert h == pytest.approx(CHIP_PX * CHIP_RES / 2)
    assert w > h  # degrees of longitude are shorter on the ground away from the equator
    assert_disjoint(splits_of(dm))


def test_a_user_given_split_by_polygons_and_by_files(chips: Path, tmp_path: Path) -> None:
    import geopandas as gpd

    names = sorted(p.name for p in (chips / "images").glob("chip_*.tif"))
    table = tmp_path / "split.csv"
    rows = ["file,split"] + [f"{n},{('train', 'val', 'test')[i % 3]}"
                             for i, n in enumerate(names)]
    table.write_text("\n".join(rows) + "\n")
    dm = chip_module(chips, split_file=str(table))
    dm.setup("fit")
    for k, ds in enumerate((dm.train_dataset, dm.val_dataset, dm.test_dataset)):
        got = sorted(Path(f).name for f in ds.index["filepath_1"])
        assert got == [n for i, n in enumerate(names) if i % 3 == k]

    # polygons (in another CRS: reprojected) split the continent west / centre / east
    halves = gpd.GeoDataFrame(
        {"split": ["train", "val", "test"]},
        geometry=[shapely.box(-80, -20, -66, 2), shapely.box(-66, -20, -60, 2),
                  shapely.box(-60, -20, -48, 2)], crs="EPSG:4326").to_crs("EPSG:3857")
    halves.to_file(tmp_path / "split.gpkg")
    dm = chip_module(chips, split_file=str(tmp_path / "split.gpkg"))
    dm.setup("fit")
    assert dm.train_dataset.index.total_bounds[2] <= -66 + 1e-6
    assert dm.test_dataset.index.total_bounds[0] >= -60 - 1e-6


@pytest.mark.parametrize(("rows", "error"), [
    (["file,split", "chip_00.tif,train", "chip_01.tif,val"], "the test split holds no data"),
    (["file,split", "chip_00.tif,holdout"], "unknown split 'holdout'"),
    (["file,split", "nope.tif,train"], "no imagery or label file named 'nope.tif'"),
    (["name,split"], "needs 'file' and 'split' columns"),
    (["file,split", "chip_00.tif,train", "chip_00.tif,test"], "train and test share ground"),
])
def test_bad_split_files_are_named(chips: Path, tmp_path: Path, rows: list[str],
                                   error: str) -> None:
    table = tmp_path / "split.csv"
    table.write_text("\n".join(rows) + "\n")
    with pytest.raises(SplitError, match=error):
        chip_module(chips, split_file=str(table)).setup("fit")
