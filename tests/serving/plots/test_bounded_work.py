"""One plot's work is bounded: refused before work, never a window larger than the store.

Reproduces the review's findings under a memory cap (a child process with 1.5 GiB of
address space): ``Area: 1e6`` (m² sent as hectares) and ``1e9`` made windows of 11,290²
px and more, and a plot far outside the store, inside its UTM band, a window reaching
it; each ended in a ``MemoryError`` (500) before. Now the plot has its own error and
the rest of the batch is answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serving.plots.geolocation import MAX_PLOT_HA, PlotsError, read_plots

pytestmark = pytest.mark.slow

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from serving.plots.check import CheckOptions, run_checks
from serving.store.reader import open_store
body = open(sys.argv[2], "rb").read()
_, records, _ = run_checks(body, open_store(sys.argv[1]), CheckOptions())
print(json.dumps([[r["plot_id"], r["verdict"], r.get("error")] for r in records]))
"""


def _checked(store: Path, features: list[dict[str, object]], tmp: Path) -> list[list[str]]:
    body = tmp / "plots.geojson"
    body.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    run = subprocess.run([sys.executable, "-c", CHILD, str(store), str(body)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return list(json.loads(run.stdout.strip().splitlines()[-1]))


def _point(region: Path, plot_id: str, area: float) -> dict[str, object]:
    features = json.loads((region / "plots_eudr.geojson").read_text())["features"]
    point = next(f for f in features if f["geometry"]["type"] == "Point")
    return {"type": "Feature", "geometry": point["geometry"],
            "properties": {"plot_id": plot_id, "Area": area}}


@pytest.mark.parametrize("area", [1e6, 1e9])
def test_an_area_in_square_metres_is_that_plots_error_under_a_memory_cap(
        built_store: Path, region_data: Path, tmp_path: Path, area: float) -> None:
    got = _checked(built_store, [_point(region_data, "huge", area),
                                 _point(region_data, "fine", 2.0)], tmp_path)
    (huge_id, huge, why), (fine_id, fine, _) = got
    assert (huge_id, huge) == ("huge", "error")
    assert "over the largest plot checked" in why and "m²" in why
    assert fine_id == "fine" and fine != "error"  # the rest of the batch is answered


def test_a_plot_outside_every_cell_reads_no_window(
        built_store: Path, region_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, its whole bounding box was allocated and filled, to find nothing there."""
    from serving.plots.check import CheckOptions, run_checks
    from serving.store import reader

    reads: list[tuple[int, int]] = []
    original = reader.ZoneReader.read

    def counted(self: reader.ZoneReader, layer: str, period: str, window: object,
                *args: object) -> object:
        reads.append((window.width, window.height))  # type: ignore[attr-defined]
        return original(self, layer, period, window, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(reader.ZoneReader, "read", counted)
    far = _point(region_data, "far", 900.0)  # under the plot limit, in the zone's band
    lon, lat = far["geometry"]["coordinates"]  # type: ignore[index]
    far["geometry"] = {"type": "Point", "coordinates": [lon, lat - 5.0]}  # 550 km south
    body = json.dumps({"type": "FeatureCollection", "features": [
        far, _point(region_data, "near", 2.0)]}).encode()
    _, records, _ = run_checks(body, reader.open_store(built_store), CheckOptions())
    assert records[0]["verdict"] == "error" and "outside the store" in records[0]["error"]
    assert records[1]["verdict"] != "error"
    assert len(set(reads)) == 1  # one window: the near plot's chunk, nothing for the far one


def test_a_request_made_only_of_plots_too_large_is_refused() -> None:
    square = {"type": "Polygon", "coordinates": [[[-76, -8], [-75.5, -8], [-75.5, -7.5],
                                                  [-76, -7.5], [-76, -8]]]}  # ~3,000 km²
    body = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": square}]}
    with pytest.raises(PlotsError, match="every plot is over the largest plot checked"):
        read_plots(json.dumps(body))
    with pytest.raises(PlotsError, match="default point area"):
        read_plots(json.dumps(body), point_area_ha=MAX_PLOT_HA * 2)


def test_vertices_are_counted_before_any_circle_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a 0.8 MB MultiPoint built every circle (seconds, 250 MB), then got 400."""
    def must_not_run(*args: object) -> None:
        raise AssertionError("circles were built before the vertex limit applied")

    monkeypatch.setattr("serving.plots.geolocation.circles_of_area", must_not_run)
    points = [[-76 + i * 1e-4, -8.0] for i in range(20_000)]  # 20,000 x 64 > 1,000,000
    body = {"type": "Feature", "properties": {"Area": 0.5},
            "geometry": {"type": "MultiPoint", "coordinates": points}}
    with pytest.raises(PlotsError, match="would have 1,280,000 vertices"):
        read_plots(json.dumps(body))
