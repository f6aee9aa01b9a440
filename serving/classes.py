"""The class schema: codes, names and colours of the land-cover classes.

The schema is data (``datasets/classes.yaml`` by default); a dataset may define its own
and a trained model carries the schema it was trained with in its contract. This module
is on the serving floor: it needs only the standard library and PyYAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")

#: The default schema shipped with the project.
DEFAULT_CLASSES_PATH = Path(__file__).resolve().parent / "classes.yaml"


class ClassSchemaError(ValueError):
    """A class schema that is malformed or inconsistent."""


@dataclass(frozen=True)
class LandCoverClass:
    """One class of the schema.

    Attributes:
        code: Integer value of the class in label rasters and class maps.
        name: Short machine name (``snake_case``).
        colour: Display colour as ``#rrggbb``.
        description: What the class means on the ground.
    """

    code: int
    name: str
    colour: str
    description: str = ""

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0-255 integers."""
        return (
            int(self.colour[1:3], 16),
            int(self.colour[3:5], 16),
            int(self.colour[5:7], 16),
        )


@dataclass(frozen=True)
class ClassSchema:
    """An ordered set of classes with one nodata code.

    Codes must be the contiguous range ``0..n-1`` so that they double as the channel
    index of the model's logits; the nodata class is ignored in the loss and in areas.

    Attributes:
        classes: The classes, ordered by code.
        nodata: Code of the class that marks "no observation".
    """

    classes: tuple[LandCoverClass, ...]
    nodata: int = 0

    def __post_init__(self) -> None:
        codes = [c.code for c in self.classes]
        if codes != list(range(len(codes))):
            raise ClassSchemaError(
                f"class codes must be 0..{len(codes) - 1} in order, got {codes}"
            )
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ClassSchemaError(f"class names must be unique, got {names}")
        for c in self.classes:
            if not _HEX_COLOUR.match(c.colour):
                raise ClassSchemaError(
                    f"class {c.name!r}: colour must be '#rrggbb', got {c.colour!r}"
                )
        if self.nodata not in codes:
            raise ClassSchemaError(f"nodata code {self.nodata} is not a class code")

    @property
    def num_classes(self) -> int:
        """Number of classes including nodata (the number of logit channels)."""
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """Class names ordered by code."""
        return [c.name for c in self.classes]

    @property
    def valid_codes(self) -> list[int]:
        """Codes of the classes that are real observations (all but nodata)."""
        return [c.code for c in self.classes if c.code != self.nodata]

    def code_of(self, name: str) -> int:
        """Return the code of the class called ``name``.

        Raises:
            ClassSchemaError: If no class has that name.
        """
        for c in self.classes:
            if c.name == name:
                return c.code
        raise ClassSchemaError(f"no class named {name!r}; classes are {self.names}")

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table (code -> RGBA) for class-map GeoTIFFs."""
        return {c.code: (*c.rgb, 255) for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable form, the inverse of :meth:`from_dict`."""
        return {"nodata": self.nodata, "classes": [asdict(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassSchema:
        """Build a schema from its dict form.

        Raises:
            ClassSchemaError: If a field is missing or malformed.
        """
        try:
            entries: Sequence[Mapping[str, Any]] = data["classes"]
            classes = tuple(
                LandCoverClass(
                    code=int(e["code"]),
                    name=str(e["name"]),
                    colour=str(e["colour"]),
                    description=str(e.get("description", "")),
                )
                for e in entries
            )
            return cls(classes=tuple(sorted(classes, key=lambda c: c.code)),
                       nodata=int(data.get("nodata", 0)))
        except (KeyError, TypeError) as err:
            raise ClassSchemaError(f"malformed class schema: missing {err}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassSchema:
        """Load a schema from a YAML file such as ``datasets/classes.yaml``."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f))


def load_classes(path: str | Path | None = None) -> ClassSchema:
    """Load a class schema, the project's default when ``path`` is None."""
    return ClassSchema.from_yaml(path or DEFAULT_CLASSES_PATH)
