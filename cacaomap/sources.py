"""The imagery-source flags every command that reads acquisitions takes, defined once.

``--stac``, ``--safe``, ``--search`` (with ``--collection``, ``--max-cloud``,
``--max-items``, ``--sign``): :class:`ImagerySource` is a dataclass parameter, so
:mod:`cacaomap.grammar` shows it as one flag group in ``cacaomap imagery composite`` and
``cacaomap store build`` alike, and :meth:`ImagerySource.items` turns it into STAC items
the same way for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cacaomap.grammar import CommandError


@dataclasses.dataclass(frozen=True)
class ImagerySource:
    """Imagery source (give one of --stac, --safe, --search).

    Attributes:
        stac: A STAC ItemCollection, catalogue or item JSON on disk.
        safe: A SAFE L2A folder, or a folder holding SAFE folders (every ``*.SAFE`` in
            it); each product is made into a STAC item.
        search: A STAC API URL, searched per period over the area's bounds.
        collection: STAC collection searched.
        max_cloud: Search only items under this eo:cloud_cover (percent).
        max_items: The most items a search may match (more is refused: narrow it).
        sign: Sign searched items' hrefs: ``planetary-computer`` for Planetary
            Computer's private blobs.
        remote_assets: Read ``http(s)``/``s3`` asset hrefs of a catalogue on disk (a
            search's items always may be); GDAL paths and VRTs are never opened.
    """

    stac: Path | None = None
    safe: Path | None = None
    search: str | None = None
    collection: str = "sentinel-2-l2a"
    max_cloud: float | None = None
    max_items: int = 1000
    sign: Literal["none", "planetary-computer"] = "none"
    remote_assets: bool = False

    @property
    def remote(self) -> bool:
        """Whether remote asset hrefs may be read."""
        return self.search is not None or self.remote_assets

    def given(self) -> int:
        """How many of --stac, --safe and --search were given."""
        return sum(x is not None for x in (self.stac, self.safe, self.search))

    def items(self, periods: Sequence[str], bbox: Sequence[float] | None) -> list[Any]:
        """The items of every period (a search runs once per period).

        Raises:
            CommandError: Unless exactly one source is given, or a search lacks a bbox.
            ImageryError: If the source holds no item or cannot be read.
        """
        from serving.imagery.sources import (
            ImageryError,
            items_from_file,
            items_from_safe,
            search_items,
        )

        if self.given() != 1:
            raise CommandError("give exactly one of --stac, --safe or --search")
        if self.stac is not None:
            return items_from_file(self.stac)
        if self.safe is not None:
            if self.safe.suffix.upper() == ".SAFE":
                products = [self.safe]
            elif self.safe.is_dir():
                products = sorted(p for p in self.safe.iterdir()
                                  if p.suffix.upper() == ".SAFE")
            else:
                raise ImageryError(f"no SAFE folder at {self.safe}")
            if not products:
                raise ImageryError(f"no SAFE product in {self.safe}")
            return items_from_safe(products)
        if not bbox:
            raise CommandError("--search needs --bbox WEST SOUTH EAST NORTH")
        return [item for period in periods for item in search_items(
            str(self.search), list(bbox), period, self.collection, self.max_cloud,
            max_items=self.max_items, sign=self.sign)]


@dataclasses.dataclass(frozen=True)
class RadarSource:
    """Radar source (Sentinel-1: --radar files or --radar-search; neither: optical only).

    Attributes:
        radar: Sentinel-1 GeoTIFFs, one per acquisition (VV and VH bands, or a
            ``*_VV.tif`` with its ``*_VH.tif`` beside it), or STAC JSON files of
            ``sentinel-1-rtc`` items.
        radar_units: ``linear`` power, ``db``, or ``auto`` (the files' tags or names,
            else their values; checked against the values either way).
        radar_search: A STAC API URL searched for Sentinel-1 RTC items over the area,
            once per period (Planetary Computer:
            ``https://planetarycomputer.microsoft.com/api/stac/v1``).
        radar_collection: The radar collection searched.
        radar_sign: Sign the radar items' hrefs: ``planetary-computer`` for Planetary
            Computer's private blobs.
        radar_max_items: The most radar items a search may match (more is refused).
        radar_speckle_filter: A spatial speckle filter on each acquisition before the
            temporal statistics: ``none`` (the statistics alone) or ``lee``
            (docs/radar.md measures what it does).
        radar_speckle_window: The filter's window side (odd, in the radar's pixels).
    """

    radar: list[Path] | None = None
    radar_units: Literal["linear", "db", "auto"] = "auto"
    radar_search: str | None = None
    radar_collection: str = "sentinel-1-rtc"
    radar_sign: Literal["none", "planetary-computer"] = "none"
    radar_max_items: int = 1000
    radar_speckle_filter: Literal["none", "lee"] = "none"
    radar_speckle_window: int = 5

    def given(self) -> bool:
        """Whether any radar was asked for."""
        return bool(self.radar) or self.radar_search is not None

    def files(self, periods: Sequence[str], bbox: Sequence[float] | None,
              remote: bool = False) -> list[Any]:
        """The acquisitions (:class:`serving.radar.acquisitions.RadarFile`) of every period.

        Args:
            periods: ``START/END`` periods a search covers (files are taken as given).
            bbox: West, south, east, north in degrees (a search's area).
            remote: Whether remote hrefs of STAC files on disk may be read.

        Raises:
            CommandError: Both --radar and --radar-search, or a search without a period.
            ImageryError: The search fails or matches too much.
            RadarInputError, RadarUnitsError: A file or item that is not usable radar.
        """
        from serving.radar.speckle import Speckle

        try:
            speckle = Speckle(self.radar_speckle_filter, self.radar_speckle_window)
        except ValueError as err:
            raise CommandError(f"--radar-speckle-window: {err}") from err
        return [dataclasses.replace(f, speckle=speckle)
                for f in self._files(periods, bbox, remote)]

    def _files(self, periods: Sequence[str], bbox: Sequence[float] | None,
               remote: bool) -> list[Any]:
        from serving.imagery.sources import search_items
        from serving.radar.acquisitions import files_from_items, radar_inputs

        if self.radar and self.radar_search:
            raise CommandError("give --radar or --radar-search, not both")
        if self.radar_search is None:
            return radar_inputs(list(self.radar or []), self.radar_units, remote=remote)
        if not periods or not all(periods):
            raise CommandError("--radar-search needs --period START/END")
        if not bbox:
            raise CommandError("--radar-search needs the area's bounds")
        items = [item for period in periods for item in search_items(
            self.radar_search, list(bbox), period, self.radar_collection,
            max_items=self.radar_max_items, sign=self.radar_sign)]
        return files_from_items(items, self.radar_units, remote=True)


#: No radar: optical only (the default of commands that take a radar source).
NO_RADAR = RadarSource()
