"""Fixtures: a small region's imagery, a model, and the store built from them (per session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from serving.imagery.sources import items_from_file
from serving.radar.acquisitions import describe
from serving.radar.statistics import RADAR_BANDS
from serving.store.build import BuildOptions, build_store
from tests.model_factory import write_local_model
from training.synthetic import LandscapeConfig
from training.synthetic.spectra import S2_BANDS
from training.synthetic.time_series import generate_time_series

PERIODS = {"reference": "2020-01-01/2020-12-31", "current": "2024-01-01/2024-12-31"}
#: Cells of 1.28 km over the 2.56 km landscape: plots straddle cells.
CELL_SIZE_M = 1280.0


@pytest.fixture(scope="session")
def region_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 px synthetic landscape as a STAC catalogue, with EUDR plots and a region."""
    out = tmp_path_factory.mktemp("region") / "ts"
    return generate_time_series(out, LandscapeConfig(size=256, seed=5, acquisitions=3),
                                progress=False)


@pytest.fixture(scope="session")
def store_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real ONNX model for the default bands and classes."""
    return write_local_model(tmp_path_factory.mktemp("store-model") / "model")


@pytest.fixture(scope="session")
def built_store(region_data: Path, store_model: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The region's store, built with the model from the catalogue."""
    store = tmp_path_factory.mktemp("built") / "store"
    region = shape(json.loads((region_data / "region.geojson").read_text())["features"][0][
        "geometry"])
    report = build_store(store, region, PERIODS,
                         items_from_file(region_data / "stac" / "catalog.json"), store_model,
                         BuildOptions(cell_size_m=CELL_SIZE_M))
    assert not report.failed, report.failed
    return store


def build_radar_store(region_data: Path, work: Path, bands: list[str]) -> tuple[Any, Path]:
    """The region's store built with both sensors for a model of ``bands``: (report, model)."""
    model = write_local_model(work / "model", bands=bands)
    region = shape(json.loads((region_data / "region.geojson").read_text())["features"][0][
        "geometry"])
    radar = [describe(p) for p in sorted((region_data / "radar").glob("*.tif"))]
    report = build_store(work / "store", region, PERIODS,
                         items_from_file(region_data / "stac" / "catalog.json"), model,
                         BuildOptions(cell_size_m=CELL_SIZE_M), radar=radar)
    assert not report.failed, report.failed
    return report, model


@pytest.fixture(scope="session")
def radar_store(region_data: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Path]:
    """The region's store built with both sensors, and its optical + radar model."""
    work = tmp_path_factory.mktemp("radar-store")
    _, model = build_radar_store(region_data, work, [*S2_BANDS, *RADAR_BANDS])
    return work / "store", model
