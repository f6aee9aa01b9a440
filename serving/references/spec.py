"""Layer specs: how to read a reference map or alert product, in a small YAML file.

A spec names a layer's rasters by **role** and says what their values mean:

```yaml
name: prodes
title: PRODES annual deforestation, Brazilian Amazon (INPE)
version: as distributed by sits (v20220606)
url: https://terrabrasilis.dpi.inpe.br/downloads/
files: {classes: "*.tif"}        # role -> glob in a folder (one file: the only role)
nodata: {classes: [255, 32]}     # values that say nothing (no data, clouds)
forest: {role: classes, values: [1]}          # forest at the cutoff
loss:                                         # loss, with the period it happened in
  role: classes
  periods: {29: 2019-08-01/2020-07-31, 33: 2020-08-01/2021-07-31}
```

What a layer can say:

- ``forest``: forest at the cutoff, from class ``values`` (JRC GFC2020, MapBiomas, a
  national map) or a ``min_value`` (Hansen's tree cover in 2000, at least 10 %); a loss
  role of the same spec that ends by the cutoff takes its pixels out (Hansen's loss
  years up to 2020).
- ``loss``: loss and the period it happened in: ``periods`` per class value, ``years``
  per class value (``residual_periods``: loss found late, in a period that may start
  long before), or ``year_offset`` (value v is year offset + v: Hansen's ``lossyear``
  1-24 = 2001-2024; JRC TMF's deforestation year with offset 0); a year starts on
  ``year_start`` (``01-01``; PRODES ``08-01``, so its year 2021 runs 2020-08-01 …
  2021-07-31). A period that ends after the cutoff but starts by it **straddles** the
  cutoff: it is reported apart (``loss_straddling_ha``, flag ``straddles_cutoff``),
  never put on either side.
- ``alert``: alerts with a date and a confidence: ``date`` (``role``, ``epoch``, in
  days, optionally ``modulo``) and ``confidence`` (``role``, ``values`` by code,
  optionally ``divide``): RADD's ``20001`` is confidence 2 (low), day 1 after
  2014-12-31.

Specs ship in ``serving/references/specs/`` (``name.yaml``); a user's spec is any file
of the same shape (docs/references.md).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The EUDR cutoff: forest at the end of this day, loss after it.
CUTOFF = dt.date(2020, 12, 31)


class SpecError(ValueError):
    """A layer spec that cannot be read, or files that do not fit it."""


@dataclass(frozen=True)
class Period:
    """Days a loss happened in, both included."""

    start: dt.date
    end: dt.date

    def side(self, cutoff: dt.date) -> str:
        """``before``, ``after`` or ``straddles`` the cutoff."""
        if self.end <= cutoff:
            return "before"
        if self.start > cutoff:
            return "after"
        return "straddles"

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def parse_period(text: str) -> Period:
    """``START/END`` in ISO dates."""
    try:
        start, end = (dt.date.fromisoformat(p.strip()) for p in str(text).split("/"))
    except ValueError as err:
        raise SpecError(f"{text!r} is not a period START/END in ISO dates") from err
    if end < start:
        raise SpecError(f"period {text!r} ends before it starts")
    return Period(start, end)


@dataclass(frozen=True)
class LayerSpec:
    """A reference layer's meaning (see the module docstring for the YAML)."""

    name: str
    title: str
    files: dict[str, str]
    version: str = ""
    url: str = ""
    nodata: dict[str, list[float]] = field(default_factory=dict)
    forest: dict[str, Any] | None = None
    loss: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    notes: str = ""

    @property
    def roles(self) -> list[str]:
        """The rasters the layer reads, by role."""
        return list(self.files)

    @property
    def says(self) -> list[str]:
        """What the layer can tell: ``forest``, ``loss``, ``alert``."""
        return [k for k in ("forest", "loss", "alert") if getattr(self, k)]

    def loss_periods(self) -> dict[int, Period]:
        """Loss class value -> the period it happened in (``periods`` / ``years``)."""
        if not self.loss:
            return {}
        out = {int(k): self.year_period(int(y))
               for k, y in (self.loss.get("years") or {}).items()}
        for key in ("periods", "residual_periods"):
            out |= {int(k): parse_period(v) for k, v in (self.loss.get(key) or {}).items()}
        return out

    def year_period(self, year: int) -> Period:
        """The period of a reporting year, which starts on ``year_start``."""
        month, day = (int(p) for p in str((self.loss or {}).get("year_start", "01-01"))
                      .split("-"))
        if (month, day) == (1, 1):
            return Period(dt.date(year, 1, 1), dt.date(year, 12, 31))
        return Period(dt.date(year - 1, month, day),
                      dt.date(year, month, day) - dt.timedelta(days=1))

    def files_in(self, path: Path) -> dict[str, list[Path]]:
        """The layer's rasters under ``path``, by role.

        ``path`` is a raster (GeoTIFF, COG, VRT) of a one-role spec, a folder of tiles
        (each role's files by its glob), or a STAC catalogue, collection or
        ItemCollection on disk (``.json``): each item's asset named as the role, or
        whose file name matches the role's glob.

        Raises:
            SpecError: If a role has no file.
        """
        if path.suffix.lower() == ".json":
            return self._files_of_stac(path)
        if path.is_file():
            if len(self.files) != 1:
                raise SpecError(f"layer {self.name} reads {', '.join(self.roles)}: give a "
                                f"folder holding them, not one file ({path})")
            return {self.roles[0]: [path]}
        if not path.is_dir():
            raise SpecError(f"layer {self.name}: no file or folder at {path}")
        found = {role: sorted(p for p in path.rglob("*") if p.is_file()
                              and p.suffix.lower() in (".tif", ".tiff", ".vrt")
                              and fnmatch.fnmatch(p.name, pattern))
                 for role, pattern in self.files.items()}
        empty = [role for role, paths in found.items() if not paths]
        if empty:
            raise SpecError(f"layer {self.name}: no {', '.join(empty)} raster in {path} "
                            f"(looked for {', '.join(self.files[r] for r in empty)})")
        return found


    def _files_of_stac(self, path: Path) -> dict[str, list[Path]]:
        from serving.imagery.sources import ImageryError, items_from_file

        try:
            items = items_from_file(path)
        except ImageryError as err:
            raise SpecError(f"layer {self.name}: {err}") from err
        found: dict[str, list[Path]] = {role: [] for role in self.files}
        for item in items:
            for role, pattern in self.files.items():
                asset = item.assets.get(role) or next(
                    (a for a in item.assets.values()
                     if fnmatch.fnmatch(Path(a.href).name, pattern)), None)
                if asset is not None:
                    found[role].append(Path(asset.href))
        empty = [role for role, paths in found.items() if not paths]
        if empty:
            raise SpecError(f"layer {self.name}: no {', '.join(empty)} asset in the STAC "
                            f"items of {path}")
        return found


def _check(spec: LayerSpec, where: str) -> LayerSpec:
    if not spec.files:
        raise SpecError(f"{where}: a spec needs files (role: glob)")
    if not spec.says:
        raise SpecError(f"{where}: a spec says forest, loss or alert (none given)")
    for part in spec.says:
        block = getattr(spec, part)
        roles = [block.get("role")] if part != "alert" else [
            block.get("date", {}).get("role"), block.get("confidence", {}).get("role")]
        for role in roles:
            if role is not None and role not in spec.files:
                raise SpecError(f"{where}: {part} reads role {role!r}, which files lacks")
    if spec.forest and not ({"values", "min_value"} & set(spec.forest)):
        raise SpecError(f"{where}: forest needs values or min_value")
    if spec.loss and not ({"periods", "years", "year_offset", "residual_periods"}
                          & set(spec.loss)):
        raise SpecError(f"{where}: loss needs periods, years or year_offset")
    if spec.alert and "date" not in spec.alert:
        raise SpecError(f"{where}: alert needs date (role, epoch)")
    spec.loss_periods()  # the periods parse
    return spec


def load_spec(ref: str | Path) -> LayerSpec:
    """A spec by shipped name (``radd``) or from a YAML file.

    Raises:
        SpecError: Naming what is wrong.
    """
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SpecError(f"no layer spec file at {path}")
        text, where = path.read_text(), str(path)
    else:
        shipped = resources.files("serving.references") / "specs" / f"{ref}.yaml"
        if not shipped.is_file():
            raise SpecError(f"no shipped layer spec {ref!r}; shipped: "
                            f"{', '.join(shipped_specs())} (or give a spec file)")
        text, where = shipped.read_text(), f"spec {ref}"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{where}: not YAML ({err})") from err
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a spec is a mapping")
    known = {f for f in LayerSpec.__dataclass_fields__}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    try:
        spec = LayerSpec(**{k: v for k, v in raw.items()})
    except TypeError as err:
        raise SpecError(f"{where}: {err}") from err
    return _check(spec, where)


def shipped_specs() -> list[str]:
    """Names of the specs that ship with cacaomap."""
    folder = resources.files("serving.references") / "specs"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))
