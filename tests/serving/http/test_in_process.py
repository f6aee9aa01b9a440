"""The service in-process (``CacaoMap.to_asgi()`` + Starlette's TestClient).

Guards and validation need no real process: the app is the one ``bentoml serve`` runs
(same middleware, same BentoML request parsing, the model loaded by ``__init__``), driven
without sockets. What needs a process (memory, overload, soak, faults, schemathesis, the
browser) stays in the tests that start ``bentoml serve``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from starlette.testclient import TestClient

from serving.http.tile_payload import encode_tiles
from serving.inference.tiles import TileClassifier
from serving.settings import current
from tests.model_factory import write_local_model

TOKEN = "correct-horse-battery-staple"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("inproc") / "v1", tile_size=64,
                             overlap=16)


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    """The service with a token, on 127.0.0.1 as far as the guards can tell."""
    with pytest.MonkeyPatch.context() as env:
        # ``bentoml serve`` gives every worker a Prometheus folder; /metrics reads it.
        env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        env.setenv("CACAOMAP_MODEL", str(model_dir))
        env.setenv("CACAOMAP_API_TOKEN", TOKEN)
        current.cache_clear()
        from serving.http.service import CacaoMap

        app = CacaoMap.to_asgi()  # type: ignore[attr-defined]
        with TestClient(app, base_url="http://127.0.0.1:3000", headers=AUTH) as test_client:
            yield test_client
    current.cache_clear()


def test_api_token_is_required_when_set(client: TestClient, model_dir: Path) -> None:
    tiles = {"tiles": np.ones((1, 10, 64, 64), int).tolist()}
    assert client.get("/livez", headers={"authorization": ""}).status_code == 200
    assert client.get("/metrics", headers={"authorization": ""}).status_code == 200
    r = client.post("/classify_tiles", json=tiles, headers={"authorization": ""})
    assert r.status_code == 401 and "API token" in r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = client.post("/model", json={}, headers={"authorization": "Bearer guess"})
    assert wrong.status_code == 401
    ok = client.post("/classify_tiles", json=tiles)
    assert ok.status_code == 200 and np.asarray(ok.json()).shape == (1, 64, 64)
    expected = TileClassifier.from_model_dir(model_dir).classify(
        np.ones((1, 10, 64, 64), np.uint16))
    assert np.array_equal(np.asarray(ok.json(), np.uint8), expected)


def test_other_hosts_media_types_and_malformed_bodies_are_refused(client: TestClient
                                                                  ) -> None:
    r = client.post("/model", json={}, headers={"host": "attacker.example"})
    assert r.status_code == 400 and "attacker.example" in r.json()["error"]
    r = client.post("/classify_tiles", content=b"\x80\x04K\x01.",
                    headers={"content-type": "application/x-pickle"})
    assert r.status_code == 415 and "pickle" in r.json()["error"]
    r = client.post("/classify_scene", content=b"--x\r\nbroken",
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and "error" in r.json()
    r = client.post("/classify_scene", files={"scene": ("s.tif", b"", "image/tiff")})
    assert r.status_code == 400 and "empty" in r.json()["error"]


def _post_scene(client: TestClient, path: Path, endpoint: str):
    with open(path, "rb") as f:
        return client.post(f"/{endpoint}", files={"scene": (path.name, f, "image/tiff")})


def _binary(tiles: np.ndarray, **change: object) -> dict:
    return {**encode_tiles(tiles), **change}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (_binary(np.ones((1, 10, 64, 64), np.uint16), data="@@@@"), "not valid base64"),
        (_binary(np.ones((1, 10, 64, 64), np.uint16), shape=[2, 10, 64, 64]),
         "needs 163,840"),
        (_binary(np.ones((1, 10, 64, 64), np.uint16), shape=[1, 10, 128, 32]),
         "got (1, 10, 128, 32)"),
        (_binary(np.ones((1, 10, 64, 64), np.float32)), "expected dtype uint16"),
        (_binary(np.ones((1, 10, 64, 64), np.uint16), shape=[1, 10, 64, -64]),
         "positive integers"),
        ({"dtype": "uint16", "shape": [1, 10, 64, 64]}, "keys dtype, shape and data"),
    ],
)
def test_binary_tiles_refused_when_inconsistent(client: TestClient, payload: dict,
                                                needle: str) -> None:
    r = client.post("/classify_tiles", json={"tiles": payload})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (np.ones((1, 6, 64, 64), int).tolist(), "got (1, 6, 64, 64)"),
        (np.ones((4, 10, 32, 32), int).tolist(), "got (4, 10, 32, 32)"),  # same size
        (np.ones((10, 64, 64), int).tolist(), "got (10, 64, 64)"),
        ((np.ones((1, 10, 64, 64)) * 1.5).tolist(), "fractions"),
        ((np.ones((1, 10, 64, 64)) * -3).astype(int).tolist(), "outside the uint16 range"),
        ([[[[1, 2], [3]]]], "ragged"),
    ],
)
def test_classify_tiles_refuses_what_breaks_the_contract(
    client: TestClient, payload: list, needle: str
) -> None:
    r = client.post("/classify_tiles", json={"tiles": payload})
    assert r.status_code == 400, r.text
    assert needle in r.text


def test_bad_scenes_get_400_naming_the_problem(client: TestClient, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00 not really a tiff")
    r = _post_scene(client, garbage, "classify_scene")
    assert r.status_code == 400 and "not a readable GeoTIFF" in r.text
    six = tmp_path / "six.tif"
    with rasterio.open(six, "w", driver="GTiff", width=16, height=16, count=6,
                       dtype="uint16", crs="EPSG:32718",
                       transform=rasterio.transform.from_origin(0, 0, 10, 10)) as dst:
        dst.write(np.ones((6, 16, 16), np.uint16))
    r = _post_scene(client, six, "classify_scene_summary")
    assert r.status_code == 400 and "expected 10 bands" in r.text
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=16, height=16, count=10,
                       dtype="uint16") as dst:
        dst.write(np.ones((10, 16, 16), np.uint16))
    r = _post_scene(client, nocrs, "classify_scene_summary")
    assert r.status_code == 400 and "no CRS" in r.text
    assert client.get("/livez").status_code == 200


def test_a_page_of_another_site_cannot_drive_the_api(client: TestClient) -> None:
    tiles = json.dumps({"tiles": np.ones((1, 10, 64, 64), int).tolist()}).encode()
    evil = {"origin": "https://evil.example"}
    for path, body in (("/classify_tiles", tiles), ("/model", b"{}")):
        # fetch(url, {mode: "no-cors", method: "POST", body: blob}): no Content-Type.
        r = client.post(path, content=body, headers=evil)
        assert r.status_code == 403 and "cross-origin" in r.json()["error"], r.text
        r = client.post(path, content=body, headers={**evil,
                                                      "content-type": "application/json"})
        assert r.status_code == 403
        r = client.post(path, content=body, headers={"sec-fetch-site": "cross-site",
                                                     "content-type": "application/json"})
        assert r.status_code == 403
    r = client.post("/classify_tiles", content=tiles)  # not a browser, but no media type
    assert r.status_code == 415 and "no Content-Type" in r.json()["error"]
    same_site = {"origin": "http://127.0.0.1:3000", "sec-fetch-site": "same-origin"}
    assert client.post("/model", json={}, headers=same_site).status_code == 200
    assert client.get("/livez", headers=evil).status_code == 200  # health stays open


def test_junk_paths_do_not_grow_the_metrics(client: TestClient) -> None:
    def junk(i: int) -> None:
        client.get(f"/{i:04d}" + "x" * 2000, headers={"host": "evil.example"})
        client.get(f"/{i:04d}" + "z" * 2000)
        client.get(f"/ui/{i:04d}" + "y" * 100)

    client.post("/model", json={})
    junk(-1)  # the first of each kind makes its (bounded) series
    before = client.get("/metrics").text
    for i in range(150):
        junk(i)
    after = client.get("/metrics").text
    assert "xxxxxxxxxx" not in after and "yyyyyyyyyy" not in after
    assert 'endpoint="other"' in after and 'endpoint="/model"' in after
    assert abs(len(after) - len(before)) < 200, (len(before), len(after))  # digits only


def test_without_a_token_a_proxied_request_is_refused() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from serving.http.access_guards import TokenGuard

    async def model(_: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = TokenGuard(Starlette(routes=[Route("/model", model, methods=["POST"])]), token="")
    with TestClient(app, base_url="http://127.0.0.1:3000") as local:  # type: ignore[arg-type]
        assert local.post("/model").status_code == 200
        for header in ("x-forwarded-for", "forwarded", "x-real-ip"):
            r = local.post("/model", headers={header: "203.0.113.9"})
            assert r.status_code == 403 and "CACAOMAP_BEHIND_PROXY" in r.json()["error"]


def _geotiff(path: Path, data: np.ndarray, width: int | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=width or data.shape[2],
                       height=data.shape[1], count=data.shape[0], dtype=str(data.dtype),
                       crs="EPSG:32718", nodata=0,
                       transform=rasterio.transform.from_origin(333_000, 9_097_000, 10, 10)
                       ) as dst:
        dst.write(data if width is None else data[:, :, :width])
    return path


def test_a_scene_with_a_mask_upload_and_a_composite(client: TestClient, tmp_path: Path
                                                    ) -> None:
    """Masks and composites make unobserved pixels nodata; bad masks get a 400.

    A mask upload makes its unclear pixels nodata, a composite's count band does too,
    and a mask on another grid (or not one band) gets a 400 naming it.
    """
    from serving.imagery.composite import COUNT_BAND

    rng = np.random.default_rng(1)
    bands = rng.integers(300, 4000, (10, 48, 48)).astype(np.uint16)
    scene = _geotiff(tmp_path / "scene.tif", bands)
    clear = np.ones((1, 48, 48), np.uint8)
    clear[0, :, :20] = 0
    mask = _geotiff(tmp_path / "mask.tif", clear)

    def post(files: dict[str, Path], endpoint: str = "classify_scene_summary"
             ) -> Any:
        handles = {k: open(p, "rb") for k, p in files.items()}
        try:
            return client.post(f"/{endpoint}", files={
                k: (p.name, handles[k], "image/tiff") for k, p in files.items()})
        finally:
            for h in handles.values():
                h.close()

    bare = post({"scene": scene}).json()
    masked = post({"scene": scene, "mask": mask}).json()
    assert masked["class_pixels"]["nodata"] == 48 * 20
    assert bare["class_pixels"]["nodata"] == 0
    r = post({"scene": scene, "mask": mask}, "classify_scene")
    with rasterio.MemoryFile(r.content) as mem, mem.open() as src:
        codes = src.read(1)
        assert (codes[:, :20] == 0).all() and (codes[:, 20:] != 0).all()
        assert src.tags()["CACAOMAP_MASK_SOURCE"] == "file"
    # A composite: never-seen pixels (count 0, reflectance 0) are nodata.
    count = np.where(clear > 0, 3, 0).astype(np.uint16)
    composite = _geotiff(tmp_path / "composite.tif",
                         np.concatenate([bands * (count > 0), count]))
    with rasterio.open(composite, "r+") as dst:
        dst.descriptions = (*[f"B{i}" for i in range(10)], COUNT_BAND)
        dst.update_tags(CACAOMAP_MASK_SOURCE="scl")
    assert post({"scene": composite}).json()["class_pixels"]["nodata"] == 48 * 20
    # Bad masks.
    narrow = _geotiff(tmp_path / "narrow.tif", clear, width=40)
    r = post({"scene": scene, "mask": narrow})
    assert r.status_code == 400 and "not on the scene's grid" in r.text
    two = _geotiff(tmp_path / "two.tif", np.concatenate([clear, clear]))
    r = post({"scene": scene, "mask": two})
    assert r.status_code == 400 and "one band" in r.text
    # The baseline with a mask per date: the masked half is unobserved, not loss.
    import geopandas as gpd
    from shapely.geometry import box

    zones = tmp_path / "zones.geojson"
    gpd.GeoDataFrame({"zone_id": ["Z1"]}, geometry=[box(333_000, 9_096_520, 333_480,
                                                        9_097_000)],
                     crs="EPSG:32718").to_crs("EPSG:4326").to_file(zones, driver="GeoJSON")
    with open(scene, "rb") as a, open(scene, "rb") as b, open(mask, "rb") as m, \
            open(mask, "rb") as m2, open(zones, "rb") as z:
        r = client.post("/baseline", files={
            "reference": ("r.tif", a, "image/tiff"), "current": ("c.tif", b, "image/tiff"),
            "reference_mask": ("m.tif", m2, "image/tiff"),
            "current_mask": ("m.tif", m, "image/tiff"),
            "zones": ("z.geojson", z, "application/geo+json")})
    assert r.status_code == 200, r.text
    zone = r.json()["zones"][0]
    assert zone["valid_fraction"] == pytest.approx(28 / 48, abs=0.03)
    assert zone["forest_loss_ha"] == 0 and zone["verdict"] == "insufficient_data"


def test_the_cloud_model_masks_a_real_cloudy_scene_in_the_service(
        client: TestClient, tmp_path: Path) -> None:
    """``cloud_mask=csmask``: ukis-csmask (ONNX, no torch) runs inside the service.

    The scene is the real Sentinel-2 image of ``tests/data/cloudmask`` (30 % cloud and
    shadow by its human labels), its six bands placed as B02, B03, B04, B08, B11, B12
    and the red-edge bands interpolated between red and NIR.
    """
    from serving.imagery.masks import csmask_clear

    data = np.load(Path(__file__).resolve().parents[2] / "data" / "cloudmask"
                   / "sentinel2.npz")
    blue, green, red, nir, swir1, swir2 = np.moveaxis(data["img"], -1, 0)[:, :256, :256]
    bands = [blue, green, red, (2 * red + nir) / 3, (red + nir) / 2, (red + 2 * nir) / 3,
             nir, nir, swir1, swir2]
    dn = np.clip(np.rint(np.stack(bands) * 10000), 1, 65535).astype(np.uint16)
    scene = _geotiff(tmp_path / "cloudy.tif", dn)
    with open(scene, "rb") as f:
        r = client.post("/classify_scene", files={"scene": ("cloudy.tif", f, "image/tiff")},
                        data={"cloud_mask": "csmask"})
    assert r.status_code == 200, r.text
    with rasterio.MemoryFile(r.content) as mem, mem.open() as src:
        codes = src.read(1)
        assert src.tags()["CACAOMAP_MASK_SOURCE"] == "csmask"
    expected = ~csmask_clear(dn[[0, 1, 2, 6, 8, 9]] / 10000, ["B02", "B03", "B04", "B08",
                                                              "B11", "B12"])
    masked = codes == 0
    assert expected.mean() > 0.1
    # Strip by strip in the service, whole in the check: the same pixels, up to strip
    # edges.
    assert (masked == expected).mean() > 0.95


def test_plots_without_a_store_is_404_naming_the_setting(client: TestClient) -> None:
    r = client.post("/plots", json={"type": "FeatureCollection", "features": []})
    assert r.status_code == 404 and "CACAOMAP_STORE" in r.json()["error"]
    assert client.post("/store", json={}).status_code == 404


def test_the_page_is_never_framed_runs_only_its_own_scripts_and_is_not_sniffed(
        client: TestClient) -> None:
    for path in ("/ui/", "/ui/static/app.js", "/ui/results/" + "0" * 32 + "/map.png"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "object-src 'none'" in csp and "'unsafe-eval'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_the_token_covers_the_pages_write_route(client: TestClient) -> None:
    from serving.http.map_page import new_result_folder

    rid, _ = new_result_folder(current())
    labels = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-76.0, -8.0]},
         "properties": {"label": 1}}]})
    geo = {"content-type": "application/geo+json"}
    anonymous = client.post(f"/ui/results/{rid}/labels", content=labels,
                            headers=geo | {"authorization": ""})
    assert anonymous.status_code == 401, anonymous.text
    assert client.get("/ui/", headers={"authorization": ""}).status_code == 200  # reads
    saved = client.post(f"/ui/results/{rid}/labels", content=labels, headers=geo)
    assert saved.status_code == 200 and saved.json()["labelled"] == 1
