"""Radar statistics on a generated stack of known speckle, and their storage as uint16."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import polygamma

from serving.radar.statistics import (
    RADAR_BANDS,
    decode_db,
    encode_db,
    radar_block,
    radar_statistics,
)
from serving.radar.units import to_db

LOOKS = 4


def speckled(sigma0_db: float, dates: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Linear power: a constant sigma0 times L-look gamma speckle (mean 1)."""
    rng = np.random.default_rng(seed)
    speckle = rng.gamma(LOOKS, 1.0 / LOOKS, (dates, *shape)).astype(np.float32)
    return (10 ** (sigma0_db / 10) * speckle).astype(np.float32)


def test_the_statistics_recover_a_known_backscatter_under_speckle() -> None:
    vv = speckled(-7.0, 30, (64, 64), 0)
    vh = speckled(-13.0, 30, (64, 64), 1)
    stats, count = radar_statistics(vv, vh)
    assert (count == 30).all()
    # The mean of linear power is unbiased: its dB is the true sigma0 (within the
    # speckle left after 30 x 4 looks, averaged over the block).
    assert float(np.mean(stats["VV_mean_db"])) == pytest.approx(-7.0, abs=0.05)
    assert float(np.mean(stats["VH_mean_db"])) == pytest.approx(-13.0, abs=0.05)
    assert float(np.mean(stats["VHVV_ratio_db"])) == pytest.approx(-6.0, abs=0.07)
    # The std of dB values of L-look speckle is (10 / ln 10) sqrt(trigamma(L)).
    expected_std = 10 / np.log(10) * np.sqrt(float(polygamma(1, LOOKS)))
    assert float(np.mean(stats["VV_std_db"])) == pytest.approx(expected_std, rel=0.05)
    # Percentiles are numpy's, of the dB values.
    db = to_db(vv)
    np.testing.assert_allclose(stats["VV_p10_db"], np.percentile(db, 10, axis=0), atol=1e-4)
    np.testing.assert_allclose(stats["VV_p90_db"], np.percentile(db, 90, axis=0), atol=1e-4)
    # A mean of dB values would be biased low by the speckle: the statistics are not that.
    assert float(np.mean(db)) < -7.4


def test_unseen_acquisitions_are_left_out_and_a_pixel_never_seen_is_no_data() -> None:
    vv = speckled(-8.0, 6, (4, 4), 2)
    vh = speckled(-14.0, 6, (4, 4), 3)
    vv[:3, 0, 0] = np.nan  # three acquisitions missed one pixel
    vh[:3, 0, 0] = np.nan
    vv[:, 1, 1] = np.nan  # one pixel never seen
    vh[:, 1, 1] = np.nan
    stats, count = radar_statistics(vv, vh)
    assert count[0, 0] == 3 and count[1, 1] == 0 and count[2, 2] == 6
    assert stats["VV_mean_db"][0, 0] == pytest.approx(
        float(to_db(np.mean(vv[3:, 0, 0])[None])[0]), abs=1e-4)
    block = radar_block(vv, vh)
    assert block.shape == (len(RADAR_BANDS) + 1, 4, 4) and block.dtype == np.uint16
    assert (block[:, 1, 1] == 0).all()  # no data in every radar band
    assert (block[:-1, 2, 2] > 0).all() and block[-1, 2, 2] == 6


def test_a_vv_only_product_gives_vv_statistics_and_no_vh() -> None:
    vv = speckled(-9.0, 5, (3, 3), 4)
    vh = np.full_like(vv, np.nan)
    block = radar_block(vv, vh)
    names = list(RADAR_BANDS)
    assert (block[names.index("VV_mean_db")] > 0).all()
    assert (block[names.index("VH_mean_db")] == 0).all()
    assert (block[names.index("VHVV_ratio_db")] == 0).all()
    assert (block[-1] == 5).all()


def test_db_is_stored_in_hundredths_and_read_back() -> None:
    db = np.array([-49.99, -25.0, -11.37, 0.0, 12.5, np.nan], np.float32)
    dn = encode_db(db)
    assert dn[-1] == 0 and (dn[:-1] > 0).all()
    np.testing.assert_allclose(decode_db(dn)[:-1], db[:-1], atol=0.005)
    assert np.isnan(decode_db(dn)[-1])
