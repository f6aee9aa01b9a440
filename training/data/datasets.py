"""TorchGeo datasets for imagery, label rasters and label polygons/points.

The classes are configured by class attributes the TorchGeo way (``filename_glob``,
``filename_regex``, ``is_image``, ``all_bands``); every attribute can be overridden per
instance so that a user's own imagery (another sensor, band set or file naming) is a
matter of configuration, not code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from pyproj import CRS
from torchgeo.datasets import RasterDataset, VectorDataset

from serving.bands import DEFAULT_BANDS

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

#: File names carry their acquisition date, e.g. ``s2l2a_20201215.tif``.
DATED_FILENAME_REGEX = r"^.*_(?P<date>\d{8})\.(tif|tiff|gpkg|geojson|shp)$"


class LabelRemap:
    """Map label values through a lookup table (e.g. a source schema to ours).

    Values not in the mapping become ``fill`` (nodata by default), so that an unknown
    code is ignored rather than trained on as a wrong class.
    """

    def __init__(self, mapping: Mapping[int, int], fill: int = 0) -> None:
        """Build the lookup table from ``{source_code: target_code}``."""
        pairs = {int(src): int(dst) for src, dst in mapping.items()}
        if min(pairs) < 0:
            raise ValueError(f"label_map source codes must be >= 0: {sorted(pairs)}")
        table = torch.full((max(pairs) + 1,), fill, dtype=torch.long)
        for src, dst in pairs.items():
            table[src] = dst
        self.table = table
        self.fill = fill

    def __call__(self, sample: Sample) -> Sample:
        """Remap ``sample['mask']`` in place of the original values."""
        mask = sample["mask"]
        inside = (mask >= 0) & (mask < len(self.table))
        out = torch.full_like(mask, self.fill)
        out[inside] = self.table[mask[inside]]
        sample["mask"] = out
        return sample


def configure_files(
    dataset: RasterDataset | VectorDataset,
    filename_glob: str | None,
    filename_regex: str | None,
) -> None:
    """Override a dataset class's file pattern attributes on one instance."""
    if filename_glob is not None:
        dataset.filename_glob = filename_glob
    if filename_regex is not None:
        dataset.filename_regex = filename_regex


class MultispectralImagery(RasterDataset):
    """Multispectral surface-reflectance GeoTIFFs, one file per date.

    Defaults describe the synthetic Sentinel-2 L2A scenes; pass ``all_bands``,
    ``filename_glob`` and ``filename_regex`` for other imagery.
    """

    filename_glob = "s2l2a_*.tif"
    filename_regex = DATED_FILENAME_REGEX
    date_format = "%Y%m%d"
    is_image = True
    all_bands = DEFAULT_BANDS
    rgb_bands = ("B04", "B03", "B02")

    def __init__(
        self,
        paths: str | Iterable[str],
        bands: Sequence[str] | None = None,
        all_bands: Sequence[str] | None = None,
        filename_glob: str | None = None,
        filename_regex: str | None = None,
        crs: CRS | None = None,
        res: float | None = None,
        transforms: Transform | None = None,
    ) -> None:
        """Index the imagery files found under ``paths``.

        Args:
            paths: Folders or files to search.
            bands: Bands to read (default: all).
            all_bands: Band names in file order (default: the ten S2 bands).
            filename_glob: Glob that picks the image files.
            filename_regex: Regex with an optional ``date`` group (``YYYYMMDD``).
            crs: CRS to warp to (default: that of the first file).
            res: Resolution to resample to (default: that of the first file).
            transforms: Sample transform.
        """
        if all_bands is not None:
            self.all_bands = tuple(all_bands)
        configure_files(self, filename_glob, filename_regex)
        super().__init__(paths, crs=crs, res=res, bands=bands, transforms=transforms)


class LandCoverRaster(RasterDataset):
    """Label rasters of class codes (uint8), one file per date; 0 is nodata."""

    filename_glob = "labels_*.tif"
    filename_regex = DATED_FILENAME_REGEX
    date_format = "%Y%m%d"
    is_image = False

    def __init__(
        self,
        paths: str | Iterable[str],
        filename_glob: str | None = None,
        filename_regex: str | None = None,
        label_map: Mapping[int, int] | None = None,
        crs: CRS | None = None,
        res: float | None = None,
    ) -> None:
        """Index the label rasters; ``label_map`` recodes source codes to the schema."""
        configure_files(self, filename_glob, filename_regex)
        transforms = LabelRemap(label_map) if label_map else None
        super().__init__(paths, crs=crs, res=res, transforms=transforms)


class LandCoverVectors(VectorDataset):
    """Labels as polygons or points with a class field, rasterised on the fly.

    Points (a reference sample of photo-interpreted locations) burn the pixel they fall
    in and leave the rest nodata, so a sparse sample trains the same model. A feature
    whose class is empty (a point marked "can't tell" or skipped in the map page's label
    mode, ``label: null``) burns nothing.
    """

    filename_glob = "labels_*.gpkg"
    filename_regex = DATED_FILENAME_REGEX
    date_format = "%Y%m%d"

    def __init__(
        self,
        paths: str | Iterable[str],
        label_field: str = "class",
        filename_glob: str | None = None,
        filename_regex: str | None = None,
        label_map: Mapping[int, int] | None = None,
        crs: CRS | None = None,
        res: float = 10.0,
    ) -> None:
        """Index the vector files; ``label_field`` holds integer class codes."""
        configure_files(self, filename_glob, filename_regex)
        transforms = LabelRemap(label_map) if label_map else None
        super().__init__(
            paths, crs=crs, res=res, transforms=transforms, label_name=label_field
        )

    def get_label(self, feature: pd.Series) -> int:
        """The class code of a feature; an empty one (null, NaN) is nodata (0)."""
        value = feature[self.label_name] if self.label_name else 1
        return 0 if pd.isna(value) else int(value)
