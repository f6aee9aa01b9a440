"""``POST /plots`` on a real ``bentoml serve`` started on a store, as clients call it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest

from serving.http.local_server import ServerURL, served_model
from serving.plots.check import CheckOptions, run_checks
from serving.store.reader import open_store

pytestmark = [pytest.mark.slow, pytest.mark.server]
GEOJSON = {"content-type": "application/geo+json"}


@pytest.fixture(scope="module")
def url(built_store: Path, store_model: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerURL]:
    """The service on the store, with a small plot limit to test it."""
    log = tmp_path_factory.mktemp("plots-serve") / "serve.log"
    with served_model(store_model, log_path=log, extra_env={
            "CACAOMAP_STORE": str(built_store), "CACAOMAP_MAX_PLOTS": "500",
            "CACAOMAP_MAX_EVIDENCE": "3"}) as served:
        yield served


@pytest.fixture(scope="module")
def statement(region_data: Path) -> dict[str, Any]:
    """The region's plots as an EUDR statement."""
    return dict(json.loads((region_data / "plots_eudr.geojson").read_text()))


def verdicts(answer: dict[str, Any]) -> list[str]:
    """Each feature's verdict, in order."""
    return [f["properties"]["cacaomap"]["verdict"] for f in answer["features"]]


def test_geojson_multipart_and_bentoml_client_get_the_offline_answer(
        url: ServerURL, statement: dict[str, Any], built_store: Path) -> None:
    body = json.dumps(statement).encode()
    offline = run_checks(body, open_store(built_store), CheckOptions())[1]
    expected = [r["verdict"] for r in offline]
    raw = httpx.post(f"{url}/plots", content=body, headers=GEOJSON, timeout=120)
    assert raw.status_code == 200, raw.text
    answer = raw.json()
    assert verdicts(answer) == expected
    assert answer["lineage"]["store"]["model"]["name"] == "local-test"
    first = answer["features"][0]["properties"]["cacaomap"]
    assert first["forest_loss_ha"] == pytest.approx(offline[0]["forest_loss_ha"])
    form = httpx.post(f"{url}/plots", files={"plots": ("plots.geojson", body,
                                                       "application/geo+json")}, timeout=120)
    assert form.status_code == 200 and verdicts(form.json()) == expected
    with bentoml.SyncHTTPClient(url, timeout=120) as client:
        assert verdicts(client.plots(statement)) == expected


def test_a_broken_plot_gets_its_error_and_the_rest_are_answered(
        url: ServerURL, statement: dict[str, Any]) -> None:
    features = [*statement["features"][:3], {
        "type": "Feature", "properties": {"plot_id": "broken"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1],
                                                         [0, 0]]]}}]
    r = httpx.post(f"{url}/plots", json={"type": "FeatureCollection", "features": features},
                   timeout=120)
    assert r.status_code == 200
    records = [f["properties"]["cacaomap"] for f in r.json()["features"]]
    assert records[-1]["verdict"] == "error" and "valid polygon" in records[-1]["error"]
    assert all(rec["verdict"] != "error" for rec in records[:3])


@pytest.mark.parametrize(("content", "words"), [
    (b"plots? no", "not JSON"),
    (b'{"type": "FeatureCollection", "features": []}', "no plots"),
    (b'"a string"', "valid dictionary"),
])
def test_bodies_that_are_not_plots_are_400(url: ServerURL, content: bytes, words: str
                                           ) -> None:
    r = httpx.post(f"{url}/plots", content=content, headers=GEOJSON, timeout=60)
    assert r.status_code == 400, r.text
    assert words in r.text


def test_limits_on_plots_and_evidence_are_400(url: ServerURL, statement: dict[str, Any]
                                              ) -> None:
    many = {"type": "FeatureCollection", "features": statement["features"][:1] * 501}
    r = httpx.post(f"{url}/plots", json=many, timeout=60)
    assert r.status_code == 400 and "over the limit of 500" in r.text
    four = {"type": "FeatureCollection", "features": statement["features"][:4]}
    r = httpx.post(f"{url}/plots?evidence=true", json=four, timeout=60)
    assert r.status_code == 400 and "at most 3" in r.text


def test_evidence_comes_back_as_pictures(url: ServerURL, statement: dict[str, Any]) -> None:
    two = {"plots": {"type": "FeatureCollection", "features": statement["features"][:2]},
           "evidence": True}
    r = httpx.post(f"{url}/plots", json=two, timeout=120)
    assert r.status_code == 200, r.text
    for feature in r.json()["features"]:
        png = base64.b64decode(feature["properties"]["cacaomap"]["evidence_png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_store_describes_what_plots_are_checked_against(
        url: ServerURL, built_store: Path, store_model: Path) -> None:
    r = httpx.post(f"{url}/store", json={}, timeout=60)
    assert r.status_code == 200
    info = r.json()
    assert info["cutoff"] == "2020-12-31" and info["reference_ends_by_cutoff"] is True
    assert info["cells"] >= 4 and info["failed_cells"] == []
    assert str(built_store) not in r.text and str(store_model) not in r.text  # names only


def test_reference_layers_beside_the_store_over_http(
        built_store: Path, store_model: Path, region_data: Path, statement: dict[str, Any],
        tmp_path: Path) -> None:
    """``CACAOMAP_REFERENCE_LAYERS``: each record says what each layer sees, as offline."""
    from serving.references.layers import open_layers

    setting = ";".join(f"{n}={region_data / 'reference_layers' / n}"
                       for n in ("jrc_gfc2020", "hansen_gfc", "radd"))
    body = json.dumps(statement).encode()
    _, offline, _ = run_checks(body, open_store(built_store), CheckOptions(),
                               references=open_layers(setting))
    with served_model(store_model, log_path=tmp_path / "serve.log", extra_env={
            "CACAOMAP_STORE": str(built_store),
            "CACAOMAP_REFERENCE_LAYERS": setting}) as served:
        raw = httpx.post(f"{served}/plots", content=body, headers=GEOJSON, timeout=300)
    assert raw.status_code == 200, raw.text
    answer = raw.json()
    records = [f["properties"]["cacaomap"] for f in answer["features"]]
    assert [r["verdict"] for r in records] == [r["verdict"] for r in offline]
    for got, expected in zip(records, offline, strict=True):
        if expected["verdict"] == "error":
            continue
        assert set(got["references"]) == {"jrc_gfc2020", "hansen_gfc", "radd"}
        assert got["convergence"]["model_verdict"] == expected["model_verdict"]
        assert got["references"]["radd"]["first_alert_date"] == (
            expected["references"]["radd"]["first_alert_date"])
    assert [x["spec"] for x in answer["lineage"]["references"]] == [
        "jrc_gfc2020", "hansen_gfc", "radd"]
    assert answer["lineage"]["review_rule"] == "any"
    # the answer names the store, model and layers, never where they lie on the server
    for where in (built_store, store_model, region_data):
        assert str(where) not in raw.text
    assert answer["lineage"]["references"][0]["files"][0]["sha256"]


def test_plots_do_not_wait_behind_scenes_and_a_full_queue_is_refused_at_once(
        built_store: Path, store_model: Path, statement: dict[str, Any],
        tmp_path: Path) -> None:
    """Before, plots shared the one scene thread and queued scenes had no bound."""
    import threading
    import time

    from tests.serving.http.test_shutdown import write_scene

    scene = write_scene(tmp_path / "scene.tif", 4096)  # ~8 s of work on 2 cores
    finished: dict[str, tuple[float, int]] = {}

    def classify(name: str) -> None:
        with open(scene, "rb") as f:
            r = httpx.post(f"{served}/classify_scene", timeout=300,
                           files={"scene": (scene.name, f, "image/tiff")})
        finished[name] = (time.monotonic(), r.status_code)

    with served_model(store_model, log_path=tmp_path / "serve.log", extra_env={
            "CACAOMAP_STORE": str(built_store), "CACAOMAP_MAX_QUEUED_SCENES": "1"}) as served:
        running = threading.Thread(target=classify, args=("first",))
        running.start()
        time.sleep(3)  # received and being classified
        asked = time.monotonic()
        with open(scene, "rb") as f:
            second = httpx.post(f"{served}/classify_scene", timeout=300,
                                files={"scene": (scene.name, f, "image/tiff")})
        refused_after = time.monotonic() - asked
        plots = httpx.post(f"{served}/plots", json=statement, timeout=300)
        plots_done = time.monotonic()
        running.join()
    assert second.status_code == 503 and "retry-after" in second.headers, second.text
    assert "the service is busy" in second.json()["error"]
    assert refused_after < 3  # at once (seconds to upload), not after the first scene
    assert plots.status_code == 200
    assert finished["first"][1] == 200
    assert plots_done < finished["first"][0]  # plots answered while the scene ran
