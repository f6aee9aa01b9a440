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
