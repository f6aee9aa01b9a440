"""Reference layers decoded on rasters whose answer is known, plot by plot.

Each shipped spec reads generated rasters in its product's encoding (RADD's date and
confidence in one number, Hansen's tree cover and loss year, JRC's binary forest,
TMF's annual classes, DIST's two rasters, PRODES' August-July years); the expected
hectares are computed here from the geometry with pyproj's geodesic areas, not with the
product's code.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from pyproj import Geod
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from serving.references.layers import ReferenceLayer, measure_layer
from serving.references.spec import SpecError, load_spec, shipped_specs

GEOD = Geod(ellps="WGS84")
LON, LAT, STEP = -76.0, -8.0, 0.0001  # 100 x 100 px of ~11 m near Tocache


def write(path: Path, data: NDArray[np.generic], crs: str = "EPSG:4326",
          origin: tuple[float, float] = (LON, LAT), step: float = STEP,
          nodata: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=crs, nodata=nodata,
                       transform=from_origin(origin[0], origin[1], step, step)) as dst:
        dst.write(data, 1)
    return path


def cells(col0: int, row0: int, col1: int, row1: int) -> object:
    """Pixels [col0, col1) x [row0, row1) of the 100 x 100 grid as a lon/lat box."""
    return box(LON + col0 * STEP, LAT - row1 * STEP, LON + col1 * STEP, LAT - row0 * STEP)


def ha(geom: object) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0]) / 10_000  # type: ignore[arg-type]


def measure(layer: ReferenceLayer, *geoms: object) -> list[dict[str, object]]:
    got = measure_layer(layer, list(geoms), [ha(g) for g in geoms])  # type: ignore[arg-type]
    return [g for g in got if g is not None]


def days(date: str, epoch: str = "2014-12-31") -> int:
    return (dt.date.fromisoformat(date) - dt.date.fromisoformat(epoch)).days


def test_every_shipped_spec_loads_and_says_something() -> None:
    names = shipped_specs()
    assert {"jrc_gfc2020", "hansen_gfc", "jrc_tmf", "radd", "glad_s2", "glad_l",
            "dist_alert", "prodes", "mapbiomas"} <= set(names)
    for name in names:
        assert load_spec(name).says


@pytest.mark.parametrize("spec", ["radd", "glad_s2", "glad_l"])
def test_date_conf_alerts_with_both_confidences(spec: str, tmp_path: Path) -> None:
    data = np.zeros((100, 100), np.uint32)
    data[:, :50] = 30000 + days("2021-03-01")  # high confidence, after the cutoff
    data[:50, 50:] = 20000 + days("2020-06-01")  # low confidence, before it
    data[50:, 75:] = 20000 + days("2022-07-15")  # low confidence, after it
    layer = ReferenceLayer.open(spec, write(tmp_path / "alerts.tif", data))
    whole, right = measure(layer, cells(0, 0, 100, 100), cells(50, 0, 100, 100))
    assert whole["alert_high_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 50, 100)),
                                                                rel=1e-3)
    assert whole["alert_after_cutoff_ha"] == pytest.approx(
        ha(cells(0, 0, 50, 100)) + ha(cells(75, 50, 100, 100)), rel=1e-3)
    assert (whole["first_alert_date"], whole["first_alert_confidence"]) == (
        "2021-03-01", "high")
    assert right["alert_high_after_cutoff_ha"] == pytest.approx(0, abs=1e-6)  # 2020: before
    assert (right["first_alert_date"], right["first_alert_confidence"]) == (
        "2022-07-15", "low")
    assert whole["covered_fraction"] == pytest.approx(1.0, abs=1e-3)


def test_hansen_tree_cover_less_loss_by_the_cutoff(tmp_path: Path) -> None:
    cover = np.full((100, 100), 60, np.uint8)
    cover[:, 90:] = 5  # under the 10 % canopy threshold: never forest
    loss = np.zeros((100, 100), np.uint8)
    loss[:20, :50] = 15  # 2015: before the cutoff
    loss[20:40, :50] = 20  # 2020 ends on the cutoff: before
    loss[60:80, :50] = 21  # 2021: after
    write(tmp_path / "hansen" / "Hansen_GFC-2024-v1.12_treecover2000_00N_080W.tif", cover)
    write(tmp_path / "hansen" / "Hansen_GFC-2024-v1.12_lossyear_00N_080W.tif", loss)
    layer = ReferenceLayer.open("hansen_gfc", tmp_path / "hansen")
    (r,) = measure(layer, cells(0, 0, 100, 100))
    assert r["forest_cutoff_ha"] == pytest.approx(
        ha(cells(0, 0, 90, 100)) - ha(cells(0, 0, 50, 40)), rel=1e-3)
    assert r["loss_after_cutoff_ha"] == pytest.approx(ha(cells(0, 60, 50, 80)), rel=1e-3)
    assert r["loss_before_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 50, 40)), rel=1e-3)
    assert r["first_loss_period"] == "2021-01-01/2021-12-31"
    assert r["loss_straddling_ha"] == 0 and "straddles_cutoff" not in r["flags"]


def test_jrc_binary_forest_and_a_plot_partly_outside_the_layer(tmp_path: Path) -> None:
    forest = np.zeros((100, 100), np.uint8)
    forest[:, :50] = 1
    layer = ReferenceLayer.open("jrc_gfc2020", write(tmp_path / "gfc.tif", forest))
    inside, half_out, outside = measure(layer, cells(0, 0, 100, 100),
                                        cells(50, 0, 150, 100), cells(200, 0, 300, 100))
    assert inside["forest_cutoff_fraction"] == pytest.approx(0.5, rel=1e-3)
    assert half_out["covered_fraction"] == pytest.approx(0.5, rel=1e-3)
    assert "partly_outside_layer" in half_out["flags"]
    assert half_out["forest_cutoff_ha"] == pytest.approx(0, abs=1e-6)
    assert outside["covered_fraction"] == 0 and "outside_layer" in outside["flags"]


def test_a_layer_in_another_crs_and_resolution(tmp_path: Path) -> None:
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32718", always_xy=True)
    x0, y0 = to_utm.transform(LON, LAT)
    forest = np.zeros((60, 60), np.uint8)
    forest[:, :30] = 1  # the west 900 m of a 1.8 km square of 30 m pixels around the plot
    path = write(tmp_path / "utm.tif", forest, crs="EPSG:32718",
                 origin=(x0 - 300, y0 + 300), step=30)
    layer = ReferenceLayer.open("jrc_gfc2020", path)
    plot = cells(0, 0, 100, 100)  # ~1.1 km in lon/lat, inside the UTM raster
    (r,) = measure(layer, plot)
    back = Transformer.from_crs("EPSG:32718", "EPSG:4326", always_xy=True)
    west = box(*back.transform(x0 - 300, y0 - 1500), *back.transform(x0 + 600, y0 + 300))
    assert r["forest_cutoff_ha"] == pytest.approx(ha(plot.intersection(west)), rel=0.02)
    assert r["covered_fraction"] == pytest.approx(1.0, abs=1e-3)


def test_tmf_annual_classes_and_deforestation_year_with_its_no_data(tmp_path: Path) -> None:
    annual = np.full((100, 100), 1, np.uint8)
    annual[:, 80:] = 6  # other land
    annual[90:, :] = 0  # no data
    year = np.zeros((100, 100), np.uint16)
    year[:10, :10] = 2023
    write(tmp_path / "tmf" / "JRC_TMF_AnnualChange_2020_v1.tif", annual)
    write(tmp_path / "tmf" / "JRC_TMF_DeforestationYear_v1.tif", year)
    (r,) = measure(ReferenceLayer.open("jrc_tmf", tmp_path / "tmf"), cells(0, 0, 100, 100))
    assert r["covered_fraction"] == pytest.approx(0.9, rel=1e-3)
    assert r["forest_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 80, 90)), rel=1e-3)
    assert r["loss_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 10, 10)), rel=1e-3)


def test_dist_alert_status_and_date_rasters(tmp_path: Path) -> None:
    status = np.zeros((100, 100), np.uint8)
    status[:, :30] = 6  # confirmed, at least 50 %: high
    status[:, 30:60] = 2  # provisional: low
    status[:, 95:] = 255  # no data
    date = np.zeros((100, 100), np.int16)
    date[:, :60] = days("2023-02-01", "2020-12-31")
    write(tmp_path / "dist" / "OPERA_L3_DIST-ALERT_T18MUS_VEG-DIST-STATUS.tif", status)
    write(tmp_path / "dist" / "OPERA_L3_DIST-ALERT_T18MUS_VEG-DIST-DATE.tif", date)
    (r,) = measure(ReferenceLayer.open("dist_alert", tmp_path / "dist"),
                   cells(0, 0, 100, 100))
    assert r["alert_high_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 30, 100)), rel=1e-3)
    assert r["alert_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 60, 100)), rel=1e-3)
    assert r["first_alert_date"] == "2023-02-01"
    assert r["covered_fraction"] == pytest.approx(0.95, rel=1e-3)


def test_mapbiomas_natural_forest_classes_and_its_no_data(tmp_path: Path) -> None:
    coverage = np.full((100, 100), 15, np.uint8)  # pasture
    coverage[:, :20] = 3  # forest formation
    coverage[:, 20:30] = 6  # floodable forest
    coverage[:, 30:35] = 49  # wooded sandbank vegetation
    coverage[:, 35:40] = 9  # forest plantation: not natural forest
    coverage[90:, :] = 0  # no data
    layer = ReferenceLayer.open("mapbiomas", write(tmp_path / "mb2020.tif", coverage))
    (r,) = measure(layer, cells(0, 0, 100, 100))
    assert r["forest_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 35, 90)), rel=1e-3)
    assert r["covered_fraction"] == pytest.approx(0.9, rel=1e-3)
    assert "loss_after_cutoff_ha" not in r  # a forest map says nothing of loss


def test_a_year_that_straddles_the_cutoff_is_neither_side(tmp_path: Path) -> None:
    classes = np.ones((100, 100), np.uint8)  # forest
    classes[:, :20] = 29  # d2020: 2019-08-01 .. 2020-07-31, before
    classes[:, 20:40] = 33  # d2021: 2020-08-01 .. 2021-07-31, straddles
    classes[:, 90:] = 32  # clouds: say nothing
    layer = ReferenceLayer.open("prodes", write(tmp_path / "prodes.tif", classes))
    (r,) = measure(layer, cells(0, 0, 100, 100))
    assert r["loss_straddling_ha"] == pytest.approx(ha(cells(20, 0, 40, 100)), rel=1e-3)
    assert r["loss_after_cutoff_ha"] == 0
    assert r["loss_before_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 20, 100)), rel=1e-3)
    assert "straddles_cutoff" in r["flags"]
    assert r["covered_fraction"] == pytest.approx(0.9, rel=1e-3)


def test_a_users_spec_for_a_national_map(tmp_path: Path) -> None:
    """Geobosques-like: 1 forest 2020, 2 not forest; annual loss years in a band."""
    spec = tmp_path / "geobosques.yaml"
    spec.write_text("name: geobosques\ntitle: MINAM Geobosques\nfiles: {forest: '*bosque*',"
                    " loss: '*perdida*'}\nnodata: {forest: [0]}\n"
                    "forest: {role: forest, values: [1]}\n"
                    "loss: {role: loss, year_offset: 2000}\n")
    forest = np.ones((100, 100), np.uint8)
    loss = np.zeros((100, 100), np.uint8)
    loss[:50, :] = 22  # 2022
    write(tmp_path / "gb" / "bosque_2020.tif", forest)
    write(tmp_path / "gb" / "perdida_2001_2024.tif", loss)
    (r,) = measure(ReferenceLayer.open(spec, tmp_path / "gb"), cells(0, 0, 100, 100))
    assert r["loss_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 100, 50)), rel=1e-3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntitle: y\nfiles: {a: '*'}\nforest: {role: b, values: [1]}\n")
    with pytest.raises(SpecError, match="role 'b'"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no shipped layer spec"):
        load_spec("no_such_layer")


PRODES = (Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
          / "reference-layers" / "prodes"
          / "PRODES_LANDSAT_AMZ_2000-08-01_2020-07-31_class_v20220606.tif")


@pytest.mark.skipif(not PRODES.is_file(), reason="the real PRODES map lies in ../shared")
def test_the_real_prodes_map_read_through_its_spec() -> None:
    """Plots on INPE's map (EPSG:4674): figures computed here from the raster itself."""
    layer = ReferenceLayer.open("prodes", PRODES)
    with rasterio.open(PRODES) as src:
        data, t = src.read(1), src.transform
    plots = [(0, 0, 633, 484), (100, 100, 300, 250), (400, 200, 633, 484)]
    geoms = [box(t.c + c0 * t.a, t.f + r1 * t.e, t.c + c1 * t.a, t.f + r0 * t.e)
             for c0, r0, c1, r1 in plots]
    got = measure_layer(layer, geoms, [ha(g) for g in geoms])  # type: ignore[arg-type]
    # each pixel's geodesic area, row by row (SIRGAS 2000 and WGS 84 agree at this scale)
    rows = np.array([ha(box(t.c, t.f + (r + 1) * t.e, t.c + t.a, t.f + r * t.e))
                     for r in range(data.shape[0])])
    for (c0, r0, c1, r1), record in zip(plots, got, strict=True):
        assert record is not None
        part = data[r0:r1, c0:c1]
        area = np.broadcast_to(rows[r0:r1, None], part.shape)

        def sum_of(codes: list[int], part: NDArray[np.uint8] = part,
                   area: NDArray[np.float64] = area) -> float:
            return float(area[np.isin(part, codes)].sum())

        total = float(area.sum())
        assert record["forest_cutoff_ha"] == pytest.approx(sum_of([1]), rel=2e-3)
        assert record["loss_straddling_ha"] == pytest.approx(sum_of([33, 34]), rel=2e-3)
        assert record["loss_after_cutoff_ha"] == 0  # the map ends on 2021-07-31
        assert record["loss_before_cutoff_ha"] == pytest.approx(
            sum_of([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 27, 29, 18, 19, 20, 21,
                    22, 23, 24, 25, 26, 28, 31]), rel=2e-3)
        assert record["covered_fraction"] == pytest.approx(
            1 - sum_of([32, 255]) / total, abs=2e-3)
        assert ("straddles_cutoff" in record["flags"]) == (sum_of([33, 34]) > 0)
    assert got[0]["loss_straddling_ha"] > 100  # d2021 is in the clip: ~43,600 px


def test_a_layer_from_a_stac_item_collection(tmp_path: Path) -> None:
    """Hansen's two rasters as two items' assets (keys as the roles) of a collection."""
    cover = write(tmp_path / "tiles" / "cover_a.tif", np.full((100, 100), 60, np.uint8))
    loss = np.zeros((100, 100), np.uint8)
    loss[:50] = 23
    year = write(tmp_path / "tiles" / "loss_a.tif", loss)
    bbox = [LON, LAT - 100 * STEP, LON + 100 * STEP, LAT]
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": "gfc_00N_080W",
              "bbox": bbox, "geometry": mapping(box(*bbox)),
              "properties": {"datetime": "2024-12-31T00:00:00Z"}, "links": [],
              "assets": {"treecover": {"href": str(cover)}, "lossyear": {"href": str(year)}}}]
    collection = tmp_path / "hansen.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    (r,) = measure(ReferenceLayer.open("hansen_gfc", collection), cells(0, 0, 100, 100))
    assert r["loss_after_cutoff_ha"] == pytest.approx(ha(cells(0, 0, 100, 50)), rel=1e-3)
    assert r["first_loss_period"] == "2023-01-01/2023-12-31"


def test_lineage_names_each_file_and_its_sha256(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path / "gfc.tif", np.ones((10, 10), np.uint8))
    lineage = ReferenceLayer.open("jrc_gfc2020", path).lineage()
    assert lineage["spec"] == "jrc_gfc2020" and lineage["version"] == "GFC2020 V3"
    assert lineage["files"] == [{"path": str(path),
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]
    json.dumps(lineage)
    assert mapping(cells(0, 0, 1, 1))
