"""The map page at /ui: browser images, the /analyze API, and Chromium driving the page.

The browser test drives Debian's chromium with Playwright (never a downloaded browser)
against a real `bentoml serve` on loopback; screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform_bounds

from serving.classes import load_classes
from serving.http.browser_maps import class_map_image, rgb_image
from serving.http.local_server import ServerURL, served_model
from tests.model_factory import write_local_model
from tests.service_helpers import ARTIFACTS, REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def test_browser_images_sit_where_the_rasters_are(landscape: Path) -> None:
    schema = load_classes()
    labels = landscape / "labels" / "labels_20240820.tif"
    image = class_map_image(labels, schema)
    with rasterio.open(labels) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        codes = src.read(1)
    (s, w), (n, e) = image.bounds
    pixel_deg = 10 / 111_000
    for got, want in ((s, south), (w, west), (n, north), (e, east)):
        assert got == pytest.approx(want, abs=2 * pixel_deg)
    rgba = np.asarray(Image.open(io.BytesIO(image.png)))
    assert rgba.shape[2] == 4
    # Every opaque colour is a class colour; the commonest is the map's commonest class.
    colours = {tuple(c.rgb) for c in schema.classes}
    opaque = rgba[rgba[..., 3] == 255][:, :3]
    assert {tuple(map(int, c)) for c in np.unique(opaque, axis=0)} <= colours
    values, counts = np.unique(codes[codes != 0], return_counts=True)
    top = schema.classes[int(values[counts.argmax()])].rgb
    got_values, got_counts = np.unique(opaque, axis=0, return_counts=True)
    assert tuple(map(int, got_values[got_counts.argmax()])) == tuple(top)
    with rasterio.open(landscape / "images" / "s2l2a_20240820.tif") as src:
        rgb = rgb_image(src, ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                              "B12"], 0, max_side=128)
    assert max(Image.open(io.BytesIO(rgb.png)).size) <= 128


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    work = tmp_path_factory.mktemp("ui")
    model = write_local_model(work / "v1", tile_size=64, overlap=16)
    env = {"BENTOML_HOME": str(work / "home"), "CACAOMAP_RESULTS_DIR": str(work / "results")}
    with served_model(model, work / "serve.log", env, cwd=REPO) as url:
        yield url


def _files(landscape: Path) -> dict[str, Path]:
    return {"reference": landscape / "images" / "s2l2a_20201215.tif",
            "current": landscape / "images" / "s2l2a_20240820.tif",
            "zones": landscape / "plots.geojson"}


@pytest.mark.server
@pytest.mark.slow
def test_analyze_api_and_result_files(server: ServerURL, landscape: Path) -> None:
    files = _files(landscape)
    r = httpx.post(f"{server}/analyze", timeout=300, files={
        k: (p.name, p.read_bytes(), "application/geo+json" if k == "zones" else "image/tiff")
        for k, p in files.items()})
    assert r.status_code == 200, r.text
    result = r.json()
    summary = httpx.post(f"{server}/classify_scene_summary", timeout=300, files={
        "scene": ("s.tif", files["current"].read_bytes(), "image/tiff")}).json()
    for name, ha in result["dates"]["current"]["hectares"].items():
        assert ha == pytest.approx(summary["hectares"][name], rel=1e-9)
    assert len(result["zones"]["features"]) == sum(result["baseline"]["verdicts"].values())
    for name in ("classes_current.tif", "classes_reference.png", "rgb_current.png",
                 "zones.geojson", "zones.csv", "report.json", "map.png"):
        got = httpx.get(f"{server}{result['files'][name]}")
        assert got.status_code == 200 and got.content, name
    rid = result["id"]
    for bad in (f"/ui/results/{rid}/..%2F..%2Fetc%2Fpasswd", f"/ui/results/{rid}/serve.log",
                "/ui/results/../../etc/passwd", f"/ui/results/{'0' * 32}/report.json"):
        assert httpx.get(f"{server}{bad}").status_code == 404, bad
    one = httpx.post(f"{server}/analyze_scene", timeout=300, files={
        "scene": ("s.tif", files["current"].read_bytes(), "image/tiff")}).json()
    assert "baseline" not in one and set(one["dates"]) == {"current"}


def _use_page(browser: Any, server: str, name: str, files: dict[str, Path],
              hectares: dict[str, float], class_names: list[str]) -> None:
    page = browser.new_page(viewport=VIEWPORTS[name])
    outside: list[str] = []
    page.on("request", lambda req: outside.append(req.url)
            if not req.url.startswith((server, "data:", "blob:")) else None)
    page.goto(f"{server}/ui/")
    page.set_input_files("#current", str(files["current"]))
    page.click("#baseline-inputs summary")
    page.set_input_files("#reference", str(files["reference"]))
    page.set_input_files("#zones", str(files["zones"]))
    page.click("#analyze")
    page.wait_for_selector("#results:not([hidden])", timeout=240_000)
    assert page.locator("#legend .name").all_inner_texts() == class_names
    overlays = dict(page.evaluate(
        "() => [...document.querySelectorAll('img.leaflet-image-layer')]"
        ".map(i => [i.alt, i.complete ? i.naturalWidth : 0])"))
    assert overlays["class map, current date"] > 0, overlays
    # the picture says what it is drawn from
    assert overlays["RGB composite, true colour (B04, B03, B02)"] > 0, overlays
    rows = page.locator("#hectares tbody tr")
    assert rows.count() == len(class_names)
    for i in range(rows.count()):
        row = rows.nth(i)
        cls = row.get_attribute("data-cls")
        assert float(row.locator("td.current").inner_text()) == round(hectares[cls], 2), cls
    plots = page.locator("path.leaflet-interactive")
    assert plots.count() == len(json.loads(files["zones"].read_text())["features"])
    page.locator("#opacity").fill("40")
    plots.nth(plots.count() // 2).click(force=True)
    page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
    popup = page.locator(".leaflet-popup-content").inner_text()
    assert "Verdict" in popup and "Forest at the reference date" in popup, popup
    assert "_px" not in popup and "forest_ref" not in popup  # words, not field names
    page.screenshot(path=str(ARTIFACTS / f"map_page_{name}.png"), full_page=True)
    assert outside == [], f"the page fetched from elsewhere: {outside}"
    page.close()


@pytest.mark.server
@pytest.mark.slow
def test_map_page_in_chromium(server: ServerURL, landscape: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian's chromium is needed (make browser)"
    files = _files(landscape)
    summary = httpx.post(f"{server}/classify_scene_summary", timeout=300, files={
        "scene": ("s.tif", files["current"].read_bytes(), "image/tiff")}).json()
    contract = httpx.post(f"{server}/model", json={}).json()
    class_names = [c["name"] for c in contract["classes"]["classes"] if c["code"] != 0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in VIEWPORTS:
                _use_page(browser, server, name, files, summary["hectares"], class_names)
        finally:
            browser.close()


@contextlib.contextmanager
def _chromium() -> Iterator[Any]:
    """Debian's chromium under Playwright, closed after use."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _class_codes(server: str) -> list[int]:
    contract = httpx.post(f"{server}/model", json={}).json()
    return [c["code"] for c in contract["classes"]["classes"] if c["code"] != 0]


def _points_to_label(landscape: Path, path: Path, n: int = 10) -> Path:
    """``n`` points inside the scene, as ``cacaomap labels suggest`` writes them."""
    with rasterio.open(landscape / "images" / "s2l2a_20240820.tif") as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [
        west + (east - west) * (0.05 + 0.1 * k), south + (north - south) * (0.95 - 0.1 * k)]},
        "properties": {"id": k, "label": None, "map_class": 1, "uncertainty": 0.4,
                       "strategy": "uncertainty"}} for k in range(n)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _label_in_page(browser: Any, server: str, name: str, scene: Path, points: Path,
                   codes: list[int]) -> dict[str, Any]:
    page = browser.new_page(viewport=VIEWPORTS[name])
    page.goto(f"{server}/ui/")
    page.set_input_files("#current", str(scene))
    page.click("#analyze")
    page.wait_for_selector("#label-box:not([hidden])", timeout=240_000)
    page.fill("#labeller", f"tester-{name}")
    page.set_input_files("#label-points", str(points))
    page.wait_for_selector("#labelling:not([hidden])")
    assert "0 labelled, 0 can't tell, 10 to go, of 10" in page.inner_text("#label-progress")
    page.evaluate("document.activeElement.blur()")
    keys = [str(k % len(codes) + 1) for k in range(10)]
    for key in keys[:5]:
        page.keyboard.press(key)
    page.keyboard.press("b")  # back to the fifth point: change its label
    assert page.inner_text("#label-point").startswith("Point 5 of 10")
    page.keyboard.press("1")
    keys[4] = "1"
    for key in keys[5:]:
        page.keyboard.press(key)
    assert "10 labelled, 0 can't tell, 0 to go, of 10" in page.inner_text("#label-progress")
    # The RGB composite around the point (one date here), drawn once its image loads.
    # (a selector, not a script: the page's CSP allows no evaluated strings)
    page.wait_for_selector("#label-views canvas[data-drawn='1']", timeout=10_000)
    assert page.locator("#label-views canvas").count() == 1
    page.click("#label-save")
    page.wait_for_selector("#label-download:not([hidden])", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"label_mode_{name}.png"), full_page=True)
    saved: dict[str, Any] = httpx.get(
        f"{server}{page.get_attribute('#label-download', 'href')}").json()
    page.close()
    got = saved["features"]
    assert [f["properties"]["id"] for f in got] == list(range(10))
    assert [f["properties"]["label"] for f in got] == [codes[int(k) - 1] for k in keys]
    assert got[4]["properties"]["label"] == codes[0]  # the label changed on going back
    for f in got:
        props = f["properties"]
        assert props["labeller"] == f"tester-{name}" and props["labelled_at"]
        assert props["label_name"] and "rgb_current.png" in props["judged_on"]
        assert props["uncertainty"] == 0.4 and not props["cant_tell"]
    return saved


@pytest.mark.server
@pytest.mark.slow
def test_labelling_suggested_points_with_the_keyboard(server: ServerURL, landscape: Path,
                                                      tmp_path: Path) -> None:
    points = _points_to_label(landscape, tmp_path / "to_label.geojson")
    codes = _class_codes(server)
    ARTIFACTS.mkdir(exist_ok=True)
    with _chromium() as browser:
        for name in VIEWPORTS:  # desktop, then 390 px wide
            _label_in_page(browser, server, name, landscape / "images" /
                           "s2l2a_20240820.tif", points, codes)


@pytest.mark.server
@pytest.mark.slow
def test_points_labelled_in_the_page_train_a_model_that_is_scored_on_them(
        server: ServerURL, landscape: Path, tmp_path: Path,
        mlflow_store: dict[str, str]) -> None:
    """The loop: page → labels.geojson → cacaomap train fit → cacaomap model evaluate."""
    from cacaomap.main import main

    points = _points_to_label(landscape, tmp_path / "to_label.geojson")
    scene = landscape / "images" / "s2l2a_20240820.tif"
    ARTIFACTS.mkdir(exist_ok=True)
    with _chromium() as browser:
        saved = _label_in_page(browser, server, "desktop", scene, points,
                               _class_codes(server))
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels_20240820.geojson").write_text(json.dumps(saved))
    root = tmp_path / "runs"
    main(["train", "fit", "--config", str(REPO / "tests/conf/tiny.yaml"),
          "--data.init_args.images", str(landscape / "images"),
          "--data.init_args.labels", str(labels), "--data.init_args.label_kind", "vector",
          "--data.init_args.label_glob", "labels_*.geojson",
          "--data.init_args.label_field", "label", "--data.init_args.block_size", "40",
          "--trainer.default_root_dir", str(root),
          "--trainer.logger.init_args.artifact_location", mlflow_store["artifacts"]])
    checkpoint = sorted(root.rglob("*.ckpt"))[0]
    main(["model", "evaluate", "--images", str(scene), "--labels", str(labels /
          "labels_20240820.geojson"), "--label-field", "label", "--checkpoint",
          str(checkpoint), "--out", str(tmp_path / "eval"), "--name", "page",
          "--no-mlflow-log"])
    scored = json.loads((tmp_path / "eval" / "page" / "metrics.json").read_text())
    assert scored["pooled"]["pixels"] == 10  # each labelled point scores its pixel
    assert sum(map(sum, scored["pooled"]["confusion"])) == 10


@pytest.mark.server
def test_saving_labels_refuses_what_is_not_labelled_points(server: ServerURL,
                                                           landscape: Path) -> None:
    one = httpx.post(f"{server}/analyze_scene", timeout=300, files={
        "scene": ("s.tif", (landscape / "images" / "s2l2a_20240820.tif").read_bytes(),
                  "image/tiff")}).json()
    url = f"{server}/ui/results/{one['id']}/labels"
    geo = {"Content-Type": "application/geo+json"}
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-76.5, -8.2]},
             "properties": {"label": 2}}
    ok = httpx.post(url, headers=geo, content=json.dumps(
        {"type": "FeatureCollection", "features": [point]}))
    assert ok.status_code == 200 and ok.json()["labelled"] == 1
    assert httpx.get(f"{server}{ok.json()['url']}").json()["features"][0] == point
    for body, says in ((b"nope", "not JSON"), (b"{}", "FeatureCollection"),
                       (json.dumps({"type": "FeatureCollection", "features": [
                           {**point, "properties": {"label": "forest"}}]}).encode(),
                        "label must be a class code or null")):
        bad = httpx.post(url, headers=geo, content=body)
        assert bad.status_code == 400 and says in bad.json()["error"], bad.text
    assert httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}
                      ).status_code == 415
    assert httpx.post(url, headers={**geo, "Origin": "http://evil.example"},
                      content=b"{}").status_code == 403
    assert httpx.post(f"{server}/ui/results/{'0' * 32}/labels", headers=geo,
                      content=b"{}").status_code == 404


ATTACK_PAGE = """<!doctype html><title>elsewhere</title><script>
const api = %(api)s, routes = %(routes)s;
const classMap = Uint8Array.from(atob(%(class_map)s), c => c.charCodeAt(0));
async function attack() {
  const plane = () => Array.from({length: 64}, () => new Array(64).fill(500));
  const tiles = JSON.stringify({tiles: [Array.from({length: 10}, plane)]});
  for (const route of routes) {
    const form = new FormData();
    form.append("scene", new Blob([classMap], {type: "image/tiff"}), "map.tif");
    const tries = [
      {method: "POST", mode: "no-cors", body: new Blob([tiles])},          // no type
      {method: "POST", mode: "no-cors", body: tiles,
       headers: {"content-type": "text/plain"}},                          // simple
      {method: "POST", mode: "no-cors", body: form},                      // multipart
      {method: "POST", body: tiles, headers: {"content-type": "application/json"}},
    ];
    for (const init of tries) { try { await fetch(api + route, init); } catch (e) {} }
  }
  document.title = "done";
}
attack();
</script>"""


@pytest.mark.server
@pytest.mark.slow
def test_a_page_from_another_origin_gets_no_2xx(server: ServerURL, landscape: Path,
                                                tmp_path: Path) -> None:
    """What any web page a user opens could send to the service on their loopback."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    from serving.http.body_guards import ROUTE_MEDIA_TYPES

    # A real class map: /analyze_scene would accept it (and store a result) if asked.
    class_map = landscape / "labels" / "labels_20240820.tif"
    (tmp_path / "index.html").write_text(ATTACK_PAGE % {
        "api": json.dumps(str(server)), "routes": json.dumps(sorted(ROUTE_MEDIA_TYPES)),
        "class_map": json.dumps(base64.b64encode(class_map.read_bytes()).decode())})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    answers: list[tuple[str, int]] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("response", lambda r: answers.append((r.url, r.status))
                        if r.url.startswith(str(server)) else None)
                page.goto(f"http://127.0.0.1:{site.server_address[1]}/index.html")
                page.wait_for_function("document.title === 'done'", timeout=120_000)
            finally:
                browser.close()
    finally:
        site.shutdown()
    assert len(answers) >= 3 * len(ROUTE_MEDIA_TYPES), answers  # they reached the service
    assert [a for a in answers if 200 <= a[1] < 300] == [], answers
    assert httpx.post(f"{server}/model", json={}).status_code == 200  # still serving


@pytest.fixture(scope="module")
def store_server(built_store: Path, store_model: Path, region_data: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    """The service started on a baseline store, with the region's reference layers."""
    work = tmp_path_factory.mktemp("ui-store")
    layers = ";".join(f"{n}={region_data / 'reference_layers' / n}"
                      for n in ("jrc_gfc2020", "hansen_gfc", "radd"))
    env = {"CACAOMAP_STORE": str(built_store), "CACAOMAP_RESULTS_DIR": str(work / "results"),
           "CACAOMAP_REFERENCE_LAYERS": layers}
    with served_model(store_model, work / "serve.log", env, cwd=REPO) as url:
        yield url


@pytest.mark.server
@pytest.mark.slow
def test_map_page_checks_plots_against_the_store(store_server: ServerURL,
                                                 region_data: Path) -> None:
    from playwright.sync_api import sync_playwright

    plots = region_data / "plots_eudr.geojson"
    features = json.loads(plots.read_text())["features"]
    point = next(i for i, f in enumerate(features) if f["geometry"]["type"] == "Point")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport)
                page.goto(f"{store_server}/ui/")
                page.wait_for_selector("#store-box:not([hidden])", timeout=30_000)
                assert "ends by the cutoff 2020-12-31" in page.inner_text("#store-info")
                page.set_input_files("#plots-file", str(plots))
                page.click("#check-plots")
                page.wait_for_selector("#plot-results:not([hidden])", timeout=120_000)
                assert f"{len(features)} plots" in page.inner_text("#plot-verdicts")
                shapes = page.locator("path.leaflet-interactive")
                assert shapes.count() == len(features)  # points drawn as their circles
                shapes.nth(point).click(force=True)
                page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
                popup = page.locator(".leaflet-popup-content").inner_text()
                assert "around the declared point" in popup and "Verdict" in popup, popup
                assert "Seen clearly at both dates" in popup and "_ha" not in popup
                # each reference layer's figures, in words
                assert "jrc_gfc2020" in popup and "forest at the cutoff" in popup, popup
                assert "radd" in popup and "covers" in popup and "of the plot" in popup
                # a switch draws a layer over the store's region, and takes it away
                page.keyboard.press("Escape")
                switch = page.locator("#reference-toggles input[data-layer='hansen_gfc']")
                switch.check()
                page.wait_for_selector("img.reference-layer", timeout=30_000)
                assert page.locator("img.reference-layer").count() == 1
                switch.uncheck()
                page.wait_for_selector("img.reference-layer", state="detached",
                                       timeout=10_000)
                page.screenshot(path=str(ARTIFACTS / f"map_page_plots_{name}.png"),
                                full_page=True)
                page.close()
        finally:
            browser.close()


@pytest.mark.server
def test_a_caller_in_a_loop_cannot_evict_another_callers_result(server: ServerURL,
                                                                 landscape: Path) -> None:
    """Twenty ``/analyze_scene`` calls from one address leave another address's result."""
    body = {"scene": ("c.tif", (landscape / "labels" / "labels_20240820.tif").read_bytes(),
                      "image/tiff")}

    def client(address: str) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(local_address=address),
                            timeout=300)

    with client("127.0.0.2") as other, client("127.0.0.1") as looping:
        theirs = other.post(f"{server}/analyze_scene", files=body).json()["id"]
        mine = [looping.post(f"{server}/analyze_scene", files=body).json()["id"]
                for _ in range(20)]
        report = "/classes_current.png"
        assert other.get(f"{server}/ui/results/{theirs}{report}").status_code == 200
        assert looping.get(f"{server}/ui/results/{mine[-1]}{report}").status_code == 200
        assert looping.get(f"{server}/ui/results/{mine[0]}{report}").status_code == 404
