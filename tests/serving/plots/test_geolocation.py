"""EUDR geolocation as declared: points with and without Area, flags, per-plot errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from shapely.geometry import Point

from serving.plots.geolocation import POINT_MAX_HA, PlotsError, read_plots

LON, LAT = -76.5123456, -8.1654321


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A GeoJSON feature with producer properties."""
    return {"type": "Feature", "geometry": geometry,
            "properties": {"ProducerName": "Cooperativa", "ProducerCountry": "PE", **props}}


def square(lon: float, lat: float, side_deg: float) -> dict[str, Any]:
    """A square polygon (counter-clockwise) from its south-west corner."""
    ring = [[lon, lat], [lon + side_deg, lat], [lon + side_deg, lat + side_deg],
            [lon, lat + side_deg], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def statement(*features: dict[str, Any]) -> bytes:
    """A FeatureCollection as the text a client sends."""
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def test_point_with_area_becomes_a_circle_of_that_area() -> None:
    (plot,) = read_plots(statement(feature({"type": "Point", "coordinates": [LON, LAT]},
                                           Area=2.5)))
    assert plot.error is None
    assert plot.geometry_used == "circle from Area"
    assert plot.area_ha == pytest.approx(2.5, rel=1e-3)
    assert plot.geometry is not None and plot.geometry.contains(Point(LON, LAT))
    assert plot.flags == []


def test_point_without_area_gets_the_default_area_and_a_flag() -> None:
    (plot,) = read_plots(statement(feature({"type": "Point", "coordinates": [LON, LAT]})),
                         point_area_ha=1.5)
    assert plot.geometry_used == "circle of default area"
    assert plot.area_ha == pytest.approx(1.5, rel=1e-3)
    assert "area_missing" in plot.flags


def test_point_over_four_hectares_is_flagged_polygon_required() -> None:
    (plot,) = read_plots(statement(feature({"type": "Point", "coordinates": [LON, LAT]},
                                           Area=POINT_MAX_HA + 2)))
    assert "polygon_required" in plot.flags
    assert plot.area_ha == pytest.approx(POINT_MAX_HA + 2, rel=1e-3)


def test_fewer_than_six_decimals_are_flagged_as_written() -> None:
    text = ('{"type": "FeatureCollection", "features": ['
            '{"type": "Feature", "properties": {"Area": 1}, "geometry": {"type": "Point",'
            ' "coordinates": [-76.51, -8.16]}},'
            '{"type": "Feature", "properties": {"Area": 1}, "geometry": {"type": "Point",'
            ' "coordinates": [-76.510000, -8.160000]}}]}')
    low, written_out = read_plots(text)
    assert "low_precision" in low.flags
    assert "low_precision" not in written_out.flags  # trailing zeros count as written


def test_multipolygon_and_geometry_collection_are_one_plot_each() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [
        square(LON, LAT, 0.001)["coordinates"], square(LON + 0.01, LAT, 0.001)["coordinates"]]}
    collection = {"type": "GeometryCollection", "geometries": [
        square(LON, LAT + 0.02, 0.001), {"type": "Point", "coordinates": [LON, LAT + 0.05]}]}
    first, second = read_plots(statement(feature(multi), feature(collection, Area=1.0)))
    assert first.error is None and first.geometry is not None
    assert first.geometry.geom_type == "MultiPolygon"
    one_square = read_plots(statement(feature(square(LON, LAT, 0.001))))[0].area_ha
    assert first.area_ha == pytest.approx(2 * one_square, rel=1e-3)
    assert second.error is None
    assert second.geometry_used == "polygons and circle from Area"
    assert second.area_ha == pytest.approx(one_square + 1.0, rel=1e-3)


def test_broken_plots_get_their_own_error_and_the_rest_are_read() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[LON, LAT], [LON + 0.001, LAT + 0.001],
                                                  [LON + 0.001, LAT], [LON, LAT + 0.001],
                                                  [LON, LAT]]]}
    plots = read_plots(statement(
        feature(square(LON, LAT, 0.001), plot_id="good"),
        feature(bowtie, plot_id="bowtie"),
        feature({"type": "LineString", "coordinates": [[LON, LAT], [LON, LAT + 1]]},
                plot_id="line"),
        feature({"type": "Point", "coordinates": [LAT, 300.0]}, plot_id="swapped"),
        feature({"type": "Point", "coordinates": [LON, LAT]}, plot_id="area", Area="two"),
        {"type": "Feature", "geometry": None, "properties": {"plot_id": "none"}},
    ))
    by_id = {p.plot_id: p for p in plots}
    assert by_id["good"].error is None
    assert "not a valid polygon" in str(by_id["bowtie"].error)
    assert "LineString" in str(by_id["line"].error)
    assert "longitude/latitude" in str(by_id["swapped"].error)
    assert "Area must be a number" in str(by_id["area"].error)
    assert "no geometry" in str(by_id["none"].error)


def test_producer_properties_are_kept_untouched() -> None:
    (plot,) = read_plots(statement(feature(square(LON, LAT, 0.001), ProductionPlace="Uchiza",
                                           Area=1.2)))
    assert plot.feature["properties"]["ProductionPlace"] == "Uchiza"
    assert set(plot.feature["properties"]) == {"ProducerName", "ProducerCountry",
                                               "ProductionPlace", "Area"}


@pytest.mark.parametrize(("body", "message"), [
    (b"not json at all", "not GeoJSON text"),
    (b'["a", "list"]', "not a GeoJSON object"),
    (b'{"type": "FeatureCollection", "features": []}', "no plots"),
    (b'{"type": "Topology"}', "not a plot"),
])
def test_a_body_that_is_not_plots_raises(body: bytes, message: str) -> None:
    with pytest.raises(PlotsError, match=message):
        read_plots(body)


def test_more_plots_than_the_limit_raise() -> None:
    body = statement(*[feature({"type": "Point", "coordinates": [LON, LAT]})] * 3)
    with pytest.raises(PlotsError, match="over the limit of 2"):
        read_plots(body, max_plots=2)


def test_a_projected_legacy_crs_is_refused() -> None:
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "EPSG:32718"}}, "features": [feature(square(LON, LAT, 0.001))]}
    with pytest.raises(PlotsError, match="WGS 84"):
        read_plots(json.dumps(doc))
