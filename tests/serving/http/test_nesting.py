"""Bodies nested deeply, or not shaped as they should be: 4xx or a plot's error, never 500.

Reproduces the review's findings: coordinates nested 600 deep raised ``RecursionError``
(500), producer properties nested 260 deep passed every check and broke the answer,
and the labels route answered 500 to ``features: [1]``, a string geometry and string
properties. The service here checks plots against a reference layer alone (no store).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from serving.http.local_server import served_model
from serving.settings import Settings
from tests.model_factory import write_local_model
from tests.serving.references.test_layers import cells, write

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real ``bentoml serve`` checking plots against one reference layer, no store."""
    work = tmp_path_factory.mktemp("nesting")
    model = write_local_model(work / "v1", tile_size=64, overlap=16)
    forest = write(work / "gfc.tif", np.ones((100, 100), np.uint8))
    env = {"CACAOMAP_REFERENCE_LAYERS": f"jrc_gfc2020={forest}",
           "CACAOMAP_RESULTS_DIR": str(work / "results")}
    with served_model(model, log_path=work / "serve.log", extra_env=env) as url, \
            httpx.Client(base_url=str(url), timeout=120) as http:
        http.results_dir = work / "results"  # type: ignore[attr-defined]
        http.log_path = work / "serve.log"  # type: ignore[attr-defined]
        yield http


def nested(levels: int, leaf: Any) -> Any:
    for _ in range(levels):
        leaf = [leaf]
    return leaf


def post_plots(client: httpx.Client, body: object) -> Any:
    return client.post("/plots", content=json.dumps(body),
                       headers={"content-type": "application/geo+json"})


GOOD = {"type": "Feature", "properties": {"plot_id": "good"},
        "geometry": json.loads(json.dumps(cells(0, 0, 50, 50).__geo_interface__))}


def test_coordinates_nested_600_deep_are_that_plots_error(client: httpx.Client) -> None:
    deep = {"type": "Feature", "properties": {"plot_id": "deep"},
            "geometry": {"type": "Polygon", "coordinates": nested(600, [-76.0, -8.0])}}
    r = post_plots(client, {"type": "FeatureCollection", "features": [deep, GOOD]})
    assert r.status_code == 200, r.text[:500]
    deep_record, good = (f["properties"]["cacaomap"] for f in r.json()["features"])
    assert deep_record["verdict"] == "error" and "nested deeper" in deep_record["error"]
    assert good["verdict"] != "error"


def test_producer_properties_nested_260_deep_are_that_plots_error(
        client: httpx.Client) -> None:
    props: dict[str, Any] = {}
    cursor = props
    for _ in range(260):
        cursor["a"] = {}
        cursor = cursor["a"]
    deep = GOOD | {"properties": {"plot_id": "deep", "detail": props}}
    r = post_plots(client, {"type": "FeatureCollection", "features": [deep, GOOD]})
    assert r.status_code == 200, r.text[:500]
    records = [f["properties"]["cacaomap"] for f in r.json()["features"]]
    assert records[0]["verdict"] == "error" and "nested deeper" in records[0]["error"]
    assert records[1]["verdict"] != "error"


@pytest.mark.parametrize("features", [
    [1], [{"geometry": "x"}],
    [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
      "properties": "x"}],
    nested(600, 1),
])
def test_the_labels_route_answers_400_to_bodies_of_another_shape(
        client: httpx.Client, features: Any) -> None:
    from serving.http.map_page import new_result_folder

    rid, _ = new_result_folder(Settings(results_dir=client.results_dir))  # type: ignore[attr-defined]
    r = client.post(f"/ui/results/{rid}/labels",
                    content=json.dumps({"type": "FeatureCollection", "features": features}),
                    headers={"content-type": "application/geo+json"})
    assert r.status_code == 400, r.text[:300]
    assert "error" in r.json()


def test_result_ids_are_not_written_to_the_access_log(client: httpx.Client) -> None:
    """Before, every result URL (a capability) was logged at INFO by BentoML's access log."""
    import time

    from serving.http.map_page import new_result_folder

    rid, _ = new_result_folder(Settings(results_dir=client.results_dir))  # type: ignore[attr-defined]
    assert client.get(f"/ui/results/{rid}/map.png").status_code == 404  # no such file yet
    assert client.get("/livez").status_code == 200
    time.sleep(1)  # the access log is written by the server process
    log = client.log_path.read_text()  # type: ignore[attr-defined]
    assert "/ui/results/<id>/map.png" in log, log[-2000:]
    assert rid not in log


def test_after_these_bodies_the_servers_log_holds_no_traceback(client: httpx.Client) -> None:
    """Runs last in this module: every body above was answered without a traceback."""
    assert client.get("/livez").status_code == 200
    log = client.log_path.read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:3000]
