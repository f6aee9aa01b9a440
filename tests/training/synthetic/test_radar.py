"""The synthetic landscape's Sentinel-1: plausible per class, through clouds, read back right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.imagery.composite import write_composite
from serving.imagery.sources import in_period, items_from_file, load_items
from serving.radar.acquisitions import describe
from serving.radar.stack import stack_radar
from serving.radar.statistics import decode_db
from training.synthetic import LandscapeConfig
from training.synthetic.landscape import COCOA, DEGRADED, FOREST, PALM
from training.synthetic.radar import BORDER_NOISE_PX, radar_dates
from training.synthetic.spectra import S2_BANDS
from training.synthetic.time_series import generate_time_series


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = generate_time_series(tmp_path_factory.mktemp("radar") / "ts",
                               LandscapeConfig(size=192, seed=3, acquisitions=3),
                               progress=False)
    period = "2024-01-01/2024-12-31"
    items = in_period(items_from_file(out / "stac" / "catalog.json"), period)
    optical = write_composite(load_items(items, list(S2_BANDS), mask="scl"), out / "c24.tif",
                              period=period).path
    files = [describe(p) for p in sorted((out / "radar").glob("*2024*.tif"))]
    return out, stack_radar(optical, files, out / "s24.tif", period=period).path


def test_one_acquisition_every_12_days_in_linear_power_with_bands_named(
        stacked: tuple[Path, Path]) -> None:
    out, _ = stacked
    files = sorted((out / "radar").glob("*.tif"))
    assert len(files) == len(radar_dates(2020)) + len(radar_dates(2024))
    truth = json.loads((out / "truth.json").read_text())
    assert truth["radar_acquisitions"] == [p.name for p in files]
    with rasterio.open(files[0]) as src:
        assert src.descriptions == ("VV", "VH") and src.res == (20, 20)
        assert src.tags()["UNITS"] == "linear"
    assert describe(files[0]).units == "linear"


def test_statistics_tell_the_classes_apart_as_c_band_does(stacked: tuple[Path, Path]
                                                           ) -> None:
    out, path = stacked
    with rasterio.open(out / "labels" / "cover_20240820.tif") as src:
        cover = src.read(1)
    with rasterio.open(path) as src:
        names = src.descriptions

        def mean(band: str, code: int) -> float:
            values = decode_db(src.read(names.index(band) + 1))[:, BORDER_NOISE_PX + 2:]
            return float(np.nanmean(values[cover[:, BORDER_NOISE_PX + 2:] == code]))

        forest, degraded = mean("VH_mean_db", FOREST), mean("VH_mean_db", DEGRADED)
        assert -14 < forest < -11 and forest > degraded + 4  # volume scattering
        # Palm swings with the seasons; cocoa under shade trees stays steadier.
        assert mean("VH_std_db", PALM) > mean("VH_std_db", COCOA) + 0.4
        assert mean("VH_mean_db", FOREST) > mean("VH_mean_db", COCOA)


def test_clouds_leave_radar_alone_and_border_noise_is_dropped(stacked: tuple[Path, Path]
                                                                ) -> None:
    _, path = stacked
    with rasterio.open(path) as src:
        names = src.descriptions
        clear = src.read(names.index("clear_count") + 1)
        radar = src.read(names.index("radar_count") + 1)
    dates = len(radar_dates(2024))
    assert (radar > 0).all()  # clouds never hide radar
    assert (clear == 0).any()  # ... where optical saw nothing all year
    noisy = dates // 5  # every fifth acquisition has zero power at its western edge
    assert (radar[:, :BORDER_NOISE_PX * 2 - 2] == dates - noisy).all()
    assert (radar[:, BORDER_NOISE_PX * 2 + 2:] == dates).all()
