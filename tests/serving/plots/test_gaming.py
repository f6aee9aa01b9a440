"""Verdicts that cannot be gamed: the four findings of the review of the plot path.

Each test reproduces a finding first (what the supplier sends), then what a reviewer
must see: a small declared area cannot hide loss, the CSV shows our verdict and never
runs the supplier's formula, two plots with one id keep their own evidence, and a
point without ``Area`` is checked at the EU's 4 ha.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import mapping

from serving.plots.check import CheckOptions, run_checks
from serving.plots.geolocation import read_plots
from serving.plots.report_files import csv_text
from serving.store.grid import to_lonlat
from serving.store.reader import pair_of_maps
from tests.serving.plots.test_check import CRS, FOREST, SCHEMA, pixel_box, write_map

COCOA = 2


@pytest.fixture()
def cleared(tmp_path: Path) -> tuple[Path, Path]:
    """A 2 x 2 km square of forest, cleared for cocoa since the reference date."""
    ref = np.full((200, 200), FOREST, np.uint8)
    cur = np.full_like(ref, COCOA)
    return write_map(tmp_path / "ref.tif", ref), write_map(tmp_path / "cur.tif", cur)


def point(col: float, row: float, **props: object) -> dict[str, object]:
    centre = to_lonlat(pixel_box(col, row, col, row).centroid, CRS)
    return {"type": "Feature", "properties": {"plot_id": "A", **props},
            "geometry": mapping(centre)}


def check(features: list[dict[str, object]], maps: tuple[Path, Path]
          ) -> list[dict[str, object]]:
    body = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    return run_checks(body, pair_of_maps(*maps, SCHEMA), CheckOptions())[1]


def test_a_small_declared_area_cannot_hide_loss(cleared: tuple[Path, Path]) -> None:
    honest, small = check([point(100, 100, Area=2.4), point(100, 100, Area=0.09)], cleared)
    assert honest["verdict"] == "deforestation_detected"
    # 0.09 ha lost of 0.09 ha: under min_loss_ha (0.1 ha), so never "detected" ...
    assert small["forest_loss_fraction"] == pytest.approx(1.0, rel=1e-3)
    assert small["forest_loss_ha"] < 0.1
    # ... and never plainly free either: the plot is too small for any detection
    assert small["verdict"] == "needs_review"
    assert "below_detection_area" in small["flags"]  # type: ignore[operator]
    assert "below_detection_area" not in honest["flags"]  # type: ignore[operator]


def test_a_point_without_area_is_checked_at_4_ha(cleared: tuple[Path, Path]) -> None:
    (record,) = check([point(100, 100)], cleared)
    assert record["area_ha"] == pytest.approx(4.0)
    assert "area_missing" in record["flags"]  # type: ignore[operator]


def test_declared_areas_far_from_the_plot_or_any_farm_are_flagged() -> None:
    square = mapping(to_lonlat(pixel_box(0, 0, 100, 100), CRS))  # 100 ha
    features = [{"type": "Feature", "properties": {"plot_id": pid, "Area": area},
                 "geometry": square} for pid, area in (("ok", 101), ("half", 50),
                                                       ("m2", 1e6))]
    features.append({"type": "Feature", "properties": {"plot_id": "point", "Area": 1e6},
                     "geometry": mapping(to_lonlat(pixel_box(0, 0, 0, 0).centroid, CRS))})
    ok, half, m2, point = read_plots(json.dumps({"type": "FeatureCollection",
                                                 "features": features}))
    assert "area_mismatch" not in ok.flags and "implausible_area" not in ok.flags
    assert "area_mismatch" in half.flags
    # a polygon whose Area is in m²: checked as drawn, both flags raised
    assert {"area_mismatch", "implausible_area"} <= set(m2.flags) and m2.error is None
    # a point whose Area is in m²: its circle would be 1,000,000 ha, refused before work
    assert point.error is not None and "over the largest plot checked" in point.error


def test_the_csv_shows_our_fields_and_never_runs_the_producers(
        cleared: tuple[Path, Path]) -> None:
    sneaky = point(100, 100, Area=2.4, verdict="deforestation_free", forest_loss_ha=0,
                   flags="none", ProducerName='=HYPERLINK("http://x.example","ok")',
                   ProductionPlace="@SUM(A1)", Note="-2+3", plot_id="+A")
    features = [sneaky]
    plots = read_plots(json.dumps({"type": "FeatureCollection", "features": features}))
    records = check(features, cleared)
    assert records[0]["verdict"] == "deforestation_detected"
    (row,) = list(csv.DictReader(io.StringIO(csv_text(plots, records))))
    assert row["verdict"] == "deforestation_detected"  # ours, not the supplier's
    assert float(row["forest_loss_ha"]) > 2
    assert row["producer.verdict"] == "deforestation_free"  # theirs, apart
    assert row["producer.forest_loss_ha"] == "0"
    for column in ("producer.ProducerName", "producer.ProductionPlace", "producer.Note",
                   "plot_id", "producer.plot_id"):
        assert row[column].startswith("'"), (column, row[column])  # shown, never run
    assert not any(cell.startswith(("=", "+", "@")) for cell in row.values())
    assert float(row["area_ha"]) > 0  # numbers stay numbers


def test_two_plots_with_one_id_keep_their_own_evidence(cleared: tuple[Path, Path]) -> None:
    from cacaomap.plots import evidence_name

    plots = read_plots(json.dumps({"type": "FeatureCollection", "features": [
        point(50, 50, Area=1), point(150, 150, Area=1)]}))
    assert plots[0].plot_id == plots[1].plot_id == "A"
    names = {evidence_name(p.index, p.plot_id) for p in plots}
    assert len(names) == 2
