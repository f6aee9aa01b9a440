"""``cacaomap labels``: points worth labelling, from class maps and their confidence."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cacaomap.grammar import CommandError


def class_map_files(paths: list[Path]) -> list[Path]:
    """Class maps named or found in folders (``*classes.tif``; confidence COGs left out).

    Raises:
        ValueError: For a path that does not exist, or folders without class maps.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*classes.tif"))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"no such class map or folder: {path}")
    if not found:
        raise ValueError(f"no class maps (*classes.tif) in {', '.join(map(str, paths))}")
    return found


def suggest(
    maps: list[Path],
    out: Path,
    n: int = 100,
    strategy: Literal["uncertainty", "random", "mix", "olofsson"] = "mix",
    uncertain_share: float = 0.5,
    min_distance_m: float = 100.0,
    zones: Path | None = None,
    away_from: Path | None = None,
    classes: Path | None = None,
    seed: int = 0,
) -> None:
    r"""Suggest points to label: where the model is unsure, per class at random, or both.

    Reads each class map with its confidence COG (written beside it by ``cacaomap
    classify``) and writes GeoJSON points (EPSG:4326) with an empty ``label``, the
    model's ``map_class`` / ``map_class_name``, ``uncertainty`` (one minus the blended
    probability of that class), ``strategy`` and ``source`` (see
    :mod:`serving.labels.suggest`).

    Args:
        maps: Class maps (``x.classes.tif``) or folders of them.
        out: GeoJSON of the points (written at once).
        n: Points to suggest (``olofsson``: sized by the target standard error).
        strategy: ``uncertainty``, ``random`` (stratified by class), ``mix`` or
            ``olofsson`` (the area-estimation sample of ``sample-points``; one map).
        uncertain_share: Share of the points chosen by uncertainty (``mix``).
        min_distance_m: Least ground distance between two points, and from ``away_from``.
        zones: Polygons the points must fall in.
        away_from: Points (or polygons) labelled already: suggestions keep away.
        classes: Class schema YAML (default: the project's).
        seed: Seed of the random choice (per pixel, whatever the block).

    Writes:
        OUT: GeoJSON points (EPSG:4326) with an empty ``label`` to fill in (the map
        page's label mode), ``map_class``, ``map_class_name``, ``uncertainty``,
        ``strategy`` and ``source``; a table of the points per strategy and class is
        printed.

    Examples:
        cacaomap labels suggest maps/ points.geojson --n 200 --strategy mix
        cacaomap labels suggest maps/a.classes.tif maps/b.classes.tif points.geojson \
            --away-from labelled.geojson --min-distance-m 250
    """
    from serving.classes import load_classes
    from serving.files import write_bytes_atomic
    from serving.labels.suggest import olofsson_points
    from serving.labels.suggest import suggest_labels as suggest

    schema = load_classes(classes)
    files = class_map_files(maps)
    notes: list[str] = []
    if strategy == "olofsson":
        if len(files) != 1:
            raise CommandError("--strategy olofsson takes one class map")
        frame = olofsson_points(files[0], schema, seed=seed)
    else:
        frame, notes = suggest(files, n, schema, strategy, uncertain_share, min_distance_m,
                               zones, away_from, seed)
    write_bytes_atomic(out, frame.to_json().encode())
    print(f"wrote {len(frame)} points to label to {out} from {len(files)} class map(s)")
    for (why, name), group in frame.groupby(["strategy", "map_class_name"]):
        mean = group["uncertainty"].astype(float).mean()
        print(f"  {why:<12} {name:<20} {len(group):5d}  mean uncertainty {mean:.2f}")
    for note in notes:
        print(f"  note: {note}")
