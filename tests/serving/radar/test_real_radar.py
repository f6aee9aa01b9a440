"""Real Sentinel-1 files read in the right units, checked, and stacked on an optical grid."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from serving.radar.acquisitions import RadarInputError, describe, read_onto
from serving.radar.stack import stack_radar
from serving.radar.statistics import RADAR_BANDS, RADAR_COUNT_BAND, decode_db
from serving.radar.units import RadarUnitsError, to_db

DATA = Path(__file__).parents[2] / "data" / "radar"
RONDONIA = DATA / "rondonia-l8-s1"
BEN_VV = DATA / "bigearthnet" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VV.tif"
PYROSAR = DATA / "pyrosar" / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"


def optical_like(source: Path, out: Path) -> Path:
    """A stand-in optical composite on ``source``'s grid: its bands as uint16 + a count."""
    with rasterio.open(source) as src:
        data = np.clip(np.nan_to_num(src.read()), 1, 65535).astype(np.uint16)
        profile = src.profile | {"dtype": "uint16", "count": src.count + 1, "nodata": 0}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.concatenate([data, np.ones((1, *data.shape[1:]), np.uint16)]))
        dst.descriptions = (*(f"b{i}" for i in range(1, src.count + 1)), "clear_count")
    return out


def test_each_real_file_is_read_in_its_own_units() -> None:
    rondonia = describe(RONDONIA / "img_radar.tif")
    assert rondonia.units == "linear" and rondonia.vv[1] == 1 and rondonia.vh is not None
    ben = describe(BEN_VV)  # its VH twin beside it is found
    assert ben.units == "db" and ben.vh is not None and ben.vh[0].name.endswith("_VH.tif")
    assert ben.date == "2017-06-13"
    pyro = describe(PYROSAR)  # VV only; the name says dB, and so do the values
    assert pyro.units == "db" and pyro.vh is None and pyro.date == "2015-03-09"


@pytest.mark.parametrize(("path", "said", "says"), [
    (RONDONIA / "img_radar.tif", "db", "said to be dB, but the values look like linear"),
    (BEN_VV, "linear", "said to be linear power, but the values look like dB"),
    (PYROSAR, "linear", "look like dB"),
])
def test_a_file_said_to_be_in_the_wrong_units_is_refused(path: Path, said: str,
                                                         says: str) -> None:
    with pytest.raises(RadarUnitsError, match=says) as err:
        describe(path, said)  # type: ignore[arg-type]
    assert path.name in str(err.value)


def test_a_file_whose_tags_lie_about_its_units_is_refused(tmp_path: Path) -> None:
    with rasterio.open(BEN_VV) as src:
        profile, data = src.profile, src.read()
    lying = tmp_path / "s1_vv.tif"
    with rasterio.open(lying, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(UNITS="linear")
    with pytest.raises(RadarUnitsError, match="the file's tags say linear power"):
        describe(lying)
    with pytest.raises(RadarInputError, match="not a readable raster"):
        describe(tmp_path / "missing.tif")


def test_rondonia_statistics_land_in_db_where_forest_is_above_agriculture(
        tmp_path: Path) -> None:
    optical = optical_like(RONDONIA / "img_l8.tif", tmp_path / "optical.tif")
    result = stack_radar(optical, [describe(RONDONIA / "img_radar.tif")],
                         tmp_path / "stacked.tif")
    assert result.radar_items == ["img_radar.tif"] and result.radar_seen_fraction > 0.97
    points = list(csv.DictReader((RONDONIA / "endm_points.csv").open()))
    with rasterio.open(result.path) as src:
        names = src.descriptions
        assert names[:7] == (*(f"b{i}" for i in range(1, 7)), "clear_count")
        assert names[7:] == (*RADAR_BANDS, RADAR_COUNT_BAND)
        assert src.tags()["RADAR_UNITS_READ"] == '{"img_radar.tif": "linear"}'
        vh = src.read(names.index("VH_mean_db") + 1)

        def vh_db(cls: str) -> np.ndarray:
            at = [src.index(float(p["lon"]), float(p["lat"])) for p in points
                  if p["class"] == cls]
            return decode_db(np.array([vh[r, c] for r, c in at]))

    forest, agriculture = vh_db("1"), vh_db("3")
    assert -17 <= float(np.median(forest)) <= -11, forest
    assert float(np.median(forest)) > float(np.median(agriculture)) + 3


def test_db_files_are_resampled_in_linear_power_never_in_db(tmp_path: Path) -> None:
    """Two neighbours of -5 and -25 dB average to -7.97 dB, not to -15 dB."""
    transform = from_origin(500_000, 9_000_000, 10, 10)
    pair = np.array([[[-5.0, -25.0], [-5.0, -25.0]]], np.float32)
    src = tmp_path / "pair_db.tif"
    with rasterio.open(src, "w", driver="GTiff", width=2, height=2, count=1,
                       dtype="float32", crs="EPSG:32718", transform=transform) as dst:
        dst.write(pair)
    out = read_onto((src, 1), "db", None, "EPSG:32718", from_origin(500_000, 9_000_000, 20, 20),
                    1, 1)
    assert float(to_db(out)[0, 0]) == pytest.approx(10 * np.log10((10**-0.5 + 10**-2.5) / 2),
                                                    abs=0.05)


def test_border_noise_nodata_and_a_layover_mask_are_dropped(tmp_path: Path) -> None:
    """GRD border zeros, the file's nodata and masked pixels never enter a statistic."""
    transform = from_origin(500_000, 9_000_000, 10, 10)
    rng = np.random.default_rng(0)
    vv = rng.gamma(4, 0.1 / 4, (8, 8)).astype(np.float32)
    vv[:, :2] = 0.0  # border noise: zero power
    vv[0, 5] = -99.0  # nodata
    mask = np.zeros((8, 8), np.float32)
    mask[6:, 6:] = 1  # layover/shadow
    path = tmp_path / "s1_20240101_linear.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=3,
                       dtype="float32", crs="EPSG:32718", transform=transform,
                       nodata=-99.0) as dst:
        dst.write(np.stack([vv, vv / 5, mask]))
        dst.descriptions = ("VV", "VH", "layover_shadow_mask")
    found = describe(path)
    assert found.mask is not None and found.units == "linear" and found.vh == (path, 2)
    out = read_onto(found.vv, found.units, found.mask, "EPSG:32718", transform, 8, 8)
    assert np.isnan(out[:, :2]).all() and np.isnan(out[0, 5]) and np.isnan(out[6:, 6:]).all()
    assert np.isfinite(out[2:6, 2:5]).all()


def test_a_period_without_radar_items_is_stacked_optical_only_and_says_so(
        tmp_path: Path) -> None:
    optical = optical_like(RONDONIA / "img_l8.tif", tmp_path / "optical.tif")
    s1 = describe(BEN_VV)  # dated 2017-06-13
    result = stack_radar(optical, [s1], tmp_path / "stacked.tif",
                         period="2020-01-01/2020-12-31")
    assert result.radar_items == [] and result.radar_seen_fraction == 0
    assert "no radar acquisitions in the period 2020-01-01/2020-12-31" in result.notes[0]
    with rasterio.open(result.path) as src:
        assert (src.read(src.count) == 0).all()
        assert "no radar acquisitions" in src.tags()["RADAR_NOTES"]
    with pytest.raises(ValueError, match="already holds radar bands"):
        stack_radar(result.path, [s1], tmp_path / "twice.tif")


def test_rondonia_points_optical_plus_radar_against_optical_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pixel classifier trained on the neighbourhoods of some points, scored on others.

    The 3 x 3 pixels around each training point are its samples; each held-out point
    is scored at its own pixel (5 folds, by point). Both feature sets are reported; no
    threshold is asked of the difference (60 points are too few to claim one), only
    that each learns (above the 25 % of chance for four classes). Radar alone is
    reported too: one date of VV and VH tells forest from the rest, less so the rest.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold

    optical = optical_like(RONDONIA / "img_l8.tif", tmp_path / "optical.tif")
    stacked = stack_radar(optical, [describe(RONDONIA / "img_radar.tif")],
                          tmp_path / "stacked.tif").path
    points = list(csv.DictReader((RONDONIA / "endm_points.csv").open()))
    labels = np.array([int(p["class"]) for p in points])
    with rasterio.open(stacked) as src:
        names = list(src.descriptions)
        data = src.read().astype(np.float32)
        at = [src.index(float(p["lon"]), float(p["lat"])) for p in points]
    sets = {"optical": [names.index(f"b{i}") for i in range(1, 7)]}
    sets["radar"] = [names.index(b) for b in ("VV_mean_db", "VH_mean_db", "VHVV_ratio_db")]
    sets["optical + radar"] = sets["optical"] + sets["radar"]
    scores = {}
    for name, bands in sets.items():
        right = 0
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        for train, test in folds.split(np.zeros(len(labels)), labels):
            x, y = [], []
            for i in train:
                r, c = at[i]
                patch = data[bands, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                x.append(patch.reshape(len(bands), -1).T)
                y += [labels[i]] * patch[0].size
            model = RandomForestClassifier(200, random_state=0).fit(np.concatenate(x), y)
            guess = model.predict(np.array([data[bands, at[i][0], at[i][1]] for i in test]))
            right += int((guess == labels[test]).sum())
        scores[name] = right / len(labels)
    with capsys.disabled():
        print("\nRondônia, 60 points, 5 folds by point: accuracy "
              + ", ".join(f"{k} {v:.1%}" for k, v in scores.items()))
    assert all(score > 0.25 for score in scores.values()), scores


def _s1_item(tmp_path: Path, item_id: str, collection: str, product: str,
             units_db: bool = False) -> Path:
    """A Sentinel-1 STAC item JSON with ``vv``/``vh`` assets on local GeoTIFFs."""
    import datetime as dt

    import pystac

    transform = from_origin(500_000, 9_000_000, 10, 10)
    rng = np.random.default_rng(1)
    hrefs = {}
    for pol, level in (("vv", 0.2), ("vh", 0.04)):
        path = tmp_path / f"{item_id}_{pol}.tif"
        values = (level * rng.gamma(4.4, 1 / 4.4, (32, 32))).astype(np.float32)
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1,
                           dtype="float32", crs="EPSG:32718", transform=transform) as dst:
            dst.write(to_db(values) if units_db else values, 1)
        hrefs[pol] = str(path)
    item = pystac.Item(item_id, {"type": "Polygon", "coordinates": [[
        [-75.0, -9.0], [-74.99, -9.0], [-74.99, -8.99], [-75.0, -8.99], [-75.0, -9.0]]]},
        [-75.0, -9.0, -74.99, -8.99], dt.datetime(2024, 3, 5, tzinfo=dt.UTC),
        {"sar:product_type": product}, collection=None)
    item.collection_id = collection
    for pol, href in hrefs.items():
        item.add_asset(pol, pystac.Asset(href, media_type=pystac.MediaType.COG))
    path = tmp_path / f"{item_id}.json"
    path.write_text(json.dumps(item.to_dict()))
    return path


def test_sentinel1_rtc_stac_items_are_acquisitions_and_grd_items_are_refused(
        tmp_path: Path) -> None:
    from serving.radar.acquisitions import radar_inputs

    # Planetary Computer's items say GRD, the product the RTC was made from
    rtc = _s1_item(tmp_path, "S1A_IW_GRDH_1SDV_20240305_rtc", "sentinel-1-rtc", "GRD")
    [found] = radar_inputs([rtc])
    assert found.units == "linear" and found.date == "2024-03-05"
    assert str(found.vh[0]).endswith("_vh.tif") if found.vh else False
    out = read_onto(found.vv, found.units, None, "EPSG:32718",
                    from_origin(500_000, 9_000_000, 10, 10), 32, 32)
    assert float(np.nanmedian(to_db(out))) == pytest.approx(-7.0, abs=1.0)
    grd = _s1_item(tmp_path, "S1A_IW_GRDH_1SDV_20240305_grd", "sentinel-1-grd", "GRD")
    with pytest.raises(RadarInputError, match="a GRD product"):
        radar_inputs([grd])
    in_db = _s1_item(tmp_path, "S1A_db", "sentinel-1-rtc", "RTC", units_db=True)
    with pytest.raises(RadarUnitsError, match="look like dB"):
        radar_inputs([in_db], "linear")
