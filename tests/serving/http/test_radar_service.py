"""The service over HTTP with an optical + radar model and a store built with both sensors.

Plots, scenes and the map page take stacked composites as they take optical ones: the
contract names the bands, the file's band descriptions say where they are.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from PIL import Image

from serving.http.local_server import ServerURL, served_model
from serving.plots.check import CheckOptions, run_checks
from serving.radar.statistics import RADAR_COUNT_BAND
from serving.store.reader import open_store
from tests.service_helpers import REPO

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def radar_server(radar_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServerURL]:
    store, model = radar_store
    work = tmp_path_factory.mktemp("radar-serve")
    env = {"CACAOMAP_STORE": str(store), "CACAOMAP_RESULTS_DIR": str(work / "results")}
    with served_model(model, work / "serve.log", env, cwd=REPO) as url:
        yield url


def _composite(store: Path) -> Path:
    """A stacked composite with pixels that only radar saw."""
    for path in sorted(store.glob("cells/*/current/*/composite.tif")):
        with rasterio.open(path) as src:
            names = list(src.descriptions)
            only = ((src.read(names.index("clear_count") + 1) == 0)
                    & (src.read(names.index(RADAR_COUNT_BAND) + 1) > 0))
        if only.any():
            return path
    raise AssertionError("no cell with radar-only pixels")


def test_plots_over_http_say_what_rests_on_radar(radar_server: ServerURL,
                                                 radar_store: tuple[Path, Path],
                                                 region_data: Path) -> None:
    body = (region_data / "plots_eudr.geojson").read_bytes()
    offline = run_checks(body, open_store(radar_store[0]), CheckOptions())[1]
    r = httpx.post(f"{radar_server}/plots", content=body, timeout=300,
                   headers={"content-type": "application/geo+json"})
    assert r.status_code == 200, r.text
    answered = [f["properties"]["cacaomap"] for f in r.json()["features"]]
    assert [a["verdict"] for a in answered] == [o["verdict"] for o in offline]
    on_radar = [a for a in answered if "classified_from_radar" in a["flags"]]
    assert on_radar, "the persistent clouds leave plots only radar saw"
    for record in on_radar:
        assert record["verdict"] != "insufficient_data"
        assert record["radar_only_fraction"] + record["seen_optically_fraction"] \
            == pytest.approx(1.0, abs=0.05)


def test_a_stacked_scene_is_classified_where_only_radar_saw(
        radar_server: ServerURL, radar_store: tuple[Path, Path], tmp_path: Path) -> None:
    scene = _composite(radar_store[0])
    with rasterio.open(scene) as src:
        names = list(src.descriptions)
        radar_only = ((src.read(names.index("clear_count") + 1) == 0)
                      & (src.read(names.index(RADAR_COUNT_BAND) + 1) > 0))
    r = httpx.post(f"{radar_server}/classify_scene", timeout=300,
                   files={"scene": (scene.name, scene.read_bytes(), "image/tiff")})
    assert r.status_code == 200, r.text[:300]
    (tmp_path / "classes.tif").write_bytes(r.content)
    with rasterio.open(tmp_path / "classes.tif") as classes:
        codes = classes.read(1)
    assert (codes[radar_only] != 0).all()
    summary = httpx.post(f"{radar_server}/classify_scene_summary", timeout=300,
                         files={"scene": (scene.name, scene.read_bytes(), "image/tiff")})
    assert summary.status_code == 200, summary.text
    shares = summary.json()["sensors"]
    assert shares["radar alone"] == pytest.approx(radar_only.mean(), abs=1e-9)
    assert shares["optical"] + shares["radar alone"] + shares["not classified"] \
        == pytest.approx(1.0)


def test_an_optical_scene_is_refused_by_a_radar_model_naming_the_bands(
        radar_server: ServerURL, radar_store: tuple[Path, Path], tmp_path: Path) -> None:
    scene = _composite(radar_store[0])
    optical = tmp_path / "optical.tif"
    with rasterio.open(scene) as src:
        names = list(src.descriptions)
        keep = list(range(1, names.index("clear_count") + 2))
        with rasterio.open(optical, "w", **(src.profile | {
                "count": len(keep), "driver": "GTiff"})) as dst:
            dst.write(src.read(keep))
            dst.descriptions = tuple(names[i - 1] for i in keep)
    r = httpx.post(f"{radar_server}/classify_scene", timeout=300,
                   files={"scene": ("optical.tif", optical.read_bytes(), "image/tiff")})
    assert 400 <= r.status_code < 500, r.status_code
    optical_model = httpx.post(f"{radar_server}/classify_scene_summary", timeout=300,
                               files={"scene": ("o.tif", optical.read_bytes(), "image/tiff")})
    assert 400 <= optical_model.status_code < 500
    assert "VV_mean_db" in r.text or "band" in r.text.lower(), r.text


def test_the_map_page_shows_a_stacked_scene_in_true_colour(
        radar_server: ServerURL, radar_store: tuple[Path, Path]) -> None:
    scene = _composite(radar_store[0])
    r = httpx.post(f"{radar_server}/analyze_scene", timeout=300,
                   files={"scene": (scene.name, scene.read_bytes(), "image/tiff")})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["dates"]["current"]["picture"] == "true colour (B04, B03, B02)"
    png = httpx.get(f"{radar_server}{result['files']['rgb_current.png']}")
    assert png.status_code == 200
    rgba = np.asarray(Image.open(io.BytesIO(png.content)))
    seen = rgba[..., 3] > 0
    assert seen.any()
    # true colour of vegetation: not one grey, and the picture is not of the radar bands
    assert float(np.ptp(rgba[..., :3][seen].astype(float), axis=0).max()) > 50
    assert sum(result["dates"]["current"]["hectares"].values()) > 0
    sensors = result["dates"]["current"]["sensors"]
    assert sensors["radar alone"] > 0 and sensors["optical"] > 0


@pytest.mark.slow
def test_the_map_page_says_how_much_of_a_stacked_scene_rests_on_radar(
        radar_server: ServerURL, radar_store: tuple[Path, Path]) -> None:
    from playwright.sync_api import sync_playwright

    from tests.serving.http.test_map_page import CHROMIUM, CHROMIUM_ARGS

    scene = _composite(radar_store[0])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{radar_server}/ui/")
            page.set_input_files("#current", str(scene))
            page.click("#analyze")
            page.wait_for_selector("#sensors:not([hidden])", timeout=120_000)
            text = page.inner_text("#sensors")
            assert "from radar alone" in text and "clear optical observation" in text
            alts = page.evaluate("() => [...document.querySelectorAll("
                                 "'img.leaflet-image-layer')].map(i => i.alt)")
            assert "RGB composite, true colour (B04, B03, B02)" in alts
        finally:
            browser.close()


def test_a_radar_only_scene_is_pictured_in_radar_false_colour(
        radar_store: tuple[Path, Path], tmp_path: Path) -> None:
    from serving.http.browser_maps import picture_bands, rgb_image
    from serving.radar.statistics import RADAR_BANDS

    scene = _composite(radar_store[0])
    radar = tmp_path / "radar.tif"
    with rasterio.open(scene) as src:
        names = list(src.descriptions)
        keep = [names.index(b) + 1 for b in RADAR_BANDS]
        with rasterio.open(radar, "w", **(src.profile | {
                "count": len(keep), "driver": "GTiff"})) as dst:
            dst.write(src.read(keep))
            dst.descriptions = RADAR_BANDS
    with rasterio.open(radar) as src:
        indexes, what = picture_bands(src.descriptions, list(RADAR_BANDS))
        assert [RADAR_BANDS[i - 1] for i in indexes] == [
            "VV_mean_db", "VH_mean_db", "VHVV_ratio_db"]
        assert what.startswith("radar false colour")
        image = rgb_image(src, list(RADAR_BANDS), 0, max_side=128)
    with rasterio.open(scene) as src:
        optical = rgb_image(src, names, 0, max_side=128)
    rgba = np.asarray(Image.open(io.BytesIO(image.png)))
    seen = rgba[..., 3] > 0
    # radar saw what the clouds hid from optical: more of the picture is drawn
    assert seen.sum() > (np.asarray(Image.open(io.BytesIO(optical.png)))[..., 3] > 0).sum()
    assert (rgba[..., 0][seen] != rgba[..., 1][seen]).mean() > 0.5  # colour, not grey


@pytest.mark.slow
def test_a_plot_resting_on_radar_says_so_in_the_map_pages_popup(
        radar_server: ServerURL, radar_store: tuple[Path, Path], region_data: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.serving.http.test_map_page import CHROMIUM, CHROMIUM_ARGS

    plots = region_data / "plots_eudr.geojson"
    offline = run_checks(plots.read_bytes(), open_store(radar_store[0]), CheckOptions())[1]
    on_radar = next(i for i, r in enumerate(offline)
                    if "classified_from_radar" in r.get("flags", []))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{radar_server}/ui/")
            page.wait_for_selector("#store-box:not([hidden])", timeout=30_000)
            page.set_input_files("#plots-file", str(plots))
            page.click("#check-plots")
            page.wait_for_selector("#plot-results:not([hidden])", timeout=120_000)
            page.locator("path.leaflet-interactive").nth(on_radar).click(force=True)
            page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
            popup = page.locator(".leaflet-popup-content").inner_text()
            assert "Classified from radar alone" in popup, popup
            assert "classified from Sentinel-1 radar alone" in popup, popup
        finally:
            browser.close()
