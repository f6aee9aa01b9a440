"""Ground areas refuse georeferencing that no place on Earth has."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import Affine, from_origin

from serving.areas import AreaError, check_georeferencing, class_hectares, pixel_areas


@pytest.mark.parametrize(("crs", "transform", "says"), [
    ("EPSG:4326", from_origin(-76.5, 200, 1e-4, 1e-4), "latitude 200"),
    ("EPSG:4326", from_origin(-76.5, -89.9, 0.01, 0.01), "latitude -90.9"),
    ("EPSG:4326", from_origin(-180, 10, 1.0, 1.0), "longitudes -180 to -80"),
    ("EPSG:32718", Affine(10, 0, float("nan"), 0, -10, 9e6), "not finite"),
    ("EPSG:32718", from_origin(3e7, 9e6, 10, 10), "outside the domain"),
])
def test_impossible_georeferencing_is_refused(crs: str, transform: Affine,
                                              says: str) -> None:
    height = width = 100
    if "longitudes" in says:
        transform = from_origin(-180, 10, 4.0, 1.0)  # 400° of longitude
        says = "longitudes -180 to 220"
    with pytest.raises(AreaError, match=f"impossible georeferencing.*{says}"):
        check_georeferencing(crs, transform, height, width)
    with pytest.raises(AreaError, match="impossible georeferencing"):
        pixel_areas(crs, transform, height, width)


def test_plausible_rasters_have_finite_positive_areas() -> None:
    for crs, transform in (("EPSG:4326", from_origin(-180, 90, 3.6, 1.8)),
                           ("EPSG:32718", from_origin(300000, 9100000, 10, 10))):
        check_georeferencing(crs, transform, 100, 100)
        areas = pixel_areas(crs, transform, 100, 100)
        assert np.isfinite(areas).all() and (areas > 0).all()
    codes = np.array([[1, 1], [2, 0]], np.uint8)
    assert class_hectares(codes, np.full((2, 2), 100.0), 3).tolist() == [0.01, 0.02, 0.01]
