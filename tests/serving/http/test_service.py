"""A real `bentoml serve` on 127.0.0.1, called over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("svc") / "v1", tile_size=64, overlap=16)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("bentoml")
    with served_model(model_dir, home / "serve.log", {"BENTOML_HOME": str(home)},
                      cwd=REPO) as url:
        yield url


def test_health_metrics_and_contract(server: str, model_dir: Path) -> None:
    assert httpx.get(f"{server}/livez").status_code == 200
    ready = httpx.get(f"{server}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "provider": "CPUExecutionProvider",
                            "model": "local-test", "version": "v1"}
    metrics = httpx.get(f"{server}/metrics").text
    assert "bentoml_service_request" in metrics
    gauge = [line for line in metrics.splitlines()
             if line.startswith("cacaomap_execution_provider{")]
    assert len(gauge) == 1 and gauge[0].endswith(" 1.0"), gauge  # one worker
    assert 'provider="CPUExecutionProvider"' in gauge[0] and 'model="local-test v1"' in gauge[0]
    contract = httpx.post(f"{server}/model", json={}).json()
    assert contract["bands"][0] == "B02" and contract["tile_size"] == 64
    assert contract["provider"] == "CPUExecutionProvider"
    assert contract["tta"] == "none"  # CACAOMAP_TTA unset
    assert contract["onnx_sha256"] == TileClassifier.from_model_dir(model_dir
                                                                    ).contract.onnx_sha256


def test_classify_tiles_matches_in_process(server: str, model_dir: Path) -> None:
    tiles = np.random.default_rng(1).integers(1, 4000, (3, 10, 64, 64)).astype(np.uint16)
    tiles[0, :, :8, :8] = 0  # unobserved corner
    r = httpx.post(f"{server}/classify_tiles", json={"tiles": tiles.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json(), np.uint8)
    expected = TileClassifier.from_model_dir(model_dir).classify(tiles)
    assert got.shape == (3, 64, 64)
    assert np.array_equal(got, expected)
    assert (got[0, :8, :8] == 0).all()
    # The same tiles as base64 bytes give the same classes.
    r = httpx.post(f"{server}/classify_tiles", json={"tiles": encode_tiles(tiles)},
                   timeout=60)
    assert r.status_code == 200, r.text
    assert np.array_equal(np.asarray(r.json(), np.uint8), expected)
    big_endian = encode_tiles(tiles.astype(">u2"))
    assert big_endian == encode_tiles(tiles)  # always sent little-endian


def _post_scene(server: str, path: Path, endpoint: str) -> httpx.Response:
    with open(path, "rb") as f:
        return httpx.post(f"{server}/{endpoint}", timeout=120,
                          files={"scene": (path.name, f, "image/tiff")})


def test_classify_scene_returns_a_cog_like_offline(
    server: str, model_dir: Path, landscape: Path, tmp_path: Path
) -> None:
    scene = landscape / "images" / "s2l2a_20240820.tif"
    r = _post_scene(server, scene, "classify_scene")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/tiff")
    out = tmp_path / "served.tif"
    out.write_bytes(r.content)
    assert cog_validate(str(out))[0]
    offline = classify_file(scene, tmp_path / "offline.tif",
                            TileClassifier.from_model_dir(model_dir))
    with rasterio.open(out) as got, rasterio.open(scene) as src, \
            rasterio.open(offline.path) as ref:
        assert got.crs == src.crs and got.transform == src.transform
        assert np.array_equal(got.read(1), ref.read(1))
    summary = _post_scene(server, scene, "classify_scene_summary").json()
    assert summary["class_pixels"] == offline.class_pixels
    for name, ha in offline.hectares.items():
        assert summary["hectares"][name] == pytest.approx(ha, rel=1e-9)
    # 10 m UTM pixels: ground hectares within 0.1% of pixels x 0.01 ha.
    total_px = sum(summary["class_pixels"].values())
    assert sum(summary["hectares"].values()) == pytest.approx(total_px * 0.01, rel=1e-3)


def test_baseline_endpoint_matches_offline(server: str, landscape: Path) -> None:
    from serving.baseline.report import build_report
    from serving.classes import load_classes

    ref = landscape / "labels" / "labels_20201215.tif"
    cur = landscape / "labels" / "labels_20240820.tif"
    plots = landscape / "plots.geojson"
    with open(ref, "rb") as a, open(cur, "rb") as b, open(plots, "rb") as z:
        r = httpx.post(f"{server}/baseline", timeout=120, files={
            "reference": (ref.name, a, "image/tiff"), "current": (cur.name, b, "image/tiff"),
            "zones": (plots.name, z, "application/geo+json")})
    assert r.status_code == 200, r.text
    served = r.json()
    offline, _, _ = build_report(ref, cur, load_classes(), plots)
    assert served["verdicts"] == offline["verdicts"]
    assert served["landscape"]["forest_loss_ha"] == pytest.approx(
        offline["landscape"]["forest_loss_ha"])
    assert served["lineage"]["model"]["name"] == "local-test"
    # A scene instead of a class map is classified first, with this model.
    scene = landscape / "images" / "s2l2a_20201215.tif"
    with open(scene, "rb") as a, open(cur, "rb") as b, open(plots, "rb") as z:
        r = httpx.post(f"{server}/baseline", timeout=120, files={
            "reference": (scene.name, a, "image/tiff"), "current": (cur.name, b, "image/tiff"),
            "zones": (plots.name, z, "application/geo+json")})
    assert r.status_code == 200, r.text
    assert r.json()["lineage"]["reference"]["cacaomap_model"] == "local-test"
    assert r.json()["lineage"]["reference"]["date"] == "20201215"


def test_many_scenes_as_dask_tasks_through_one_url(
        server: str, landscape: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cacaomap.main import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="load balancer"):
        main(["maps", "classify", str(landscape / "images"), "--out", str(out), "--url",
              f"{server},{server}"])
    # Two dask workers: two requests in flight to the one URL.
    main(["maps", "classify", str(landscape / "images"), "--out", str(out), "--url", server,
          "--workers", "2"])
    assert "2 classified, 0 already done, 0 failed" in capsys.readouterr().out
    for path in out.glob("*.classes.tif"):
        assert cog_validate(str(path))[0]
    main(["maps", "classify", str(landscape / "images"), "--out", str(out), "--url", server])
    assert "0 classified, 2 already done" in capsys.readouterr().out


def test_service_module_never_imports_torch(model_dir: Path) -> None:
    code = ("import sys, serving.http.service; "
            "bad = [m for m in ('torch', 'lightning', 'torchgeo', 'training') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    env = os.environ | {"CACAOMAP_MODEL": str(model_dir)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bento_builds_without_torch(model_dir: Path, tmp_path: Path) -> None:
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "home"),
                        "CACAOMAP_MODEL": str(model_dir), "BENTOML_DO_NOT_TRACK": "true"}
    save = ("import bentoml, shutil, pathlib, sys\n"
            "with bentoml.models.create('cacaomap') as m:\n"
            "    for f in pathlib.Path(sys.argv[1]).iterdir():\n"
            "        shutil.copy2(f, pathlib.Path(m.path) / f.name)\n")
    subprocess.run([sys.executable, "-c", save, str(model_dir)], env=env, check=True,
                   cwd=REPO, timeout=120)
    build = subprocess.run([sys.executable, "-m", "bentoml", "build", "-f", "bentofile.yaml"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (bento,) = [p for p in (tmp_path / "home" / "bentos" / "cacaomap").iterdir()
                if p.is_dir() and p.name != "latest"]
    sources = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert "serving/http/service.py" in sources
    assert not any(s.startswith("training/") for s in sources)
    requirements = "\n".join(p.read_text() for p in (bento / "env").rglob("requirements*.txt"))
    assert "onnxruntime" in requirements
    assert "torch" not in requirements.lower()
    # the deployed image installs exactly the tested pins (BentoML adds its own, the same)
    from serving.http.bento import locked_requirements

    text = (bento / "env" / "python" / "requirements.txt").read_text().replace("\\\n", " ")
    built = {line.split()[0] for line in text.splitlines()
             if line.strip() and not line.startswith("#")}
    assert built == set(locked_requirements())
    shutil.rmtree(tmp_path / "home", ignore_errors=True)


def test_tile_requests_are_not_held_behind_a_scene(server: str, tmp_path: Path) -> None:
    """A scene runs in the scene thread; tile requests meanwhile are answered at once."""
    import threading
    import time

    side = 2048  # several seconds of work even for the small test model
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=10,
                       dtype="uint16", crs="EPSG:32718", tiled=True,
                       transform=rasterio.transform.from_origin(300000, 9100000, 10, 10)
                       ) as dst:
        dst.write(np.random.default_rng(0).integers(200, 3000, (10, side, side), np.uint16))
    scene_done: list[float] = []

    def post_scene() -> None:
        with open(path, "rb") as f:
            r = httpx.post(f"{server}/classify_scene_summary", timeout=600,
                           files={"scene": ("big.tif", f, "image/tiff")})
        assert r.status_code == 200, r.text
        scene_done.append(time.monotonic())

    worker = threading.Thread(target=post_scene)
    worker.start()
    time.sleep(1.0)  # the upload is read and the scene has started
    body = {"tiles": encode_tiles(np.ones((1, 10, 64, 64), np.uint16))}
    tiles_done = []
    for _ in range(5):
        r = httpx.post(f"{server}/classify_tiles", json=body, timeout=600)
        assert r.status_code == 200, r.text
        tiles_done.append(time.monotonic())
    worker.join()
    assert scene_done and tiles_done[-1] < scene_done[0], (
        "tile requests waited for the scene to finish")


def test_livez_answers_within_a_probe_timeout_while_a_large_json_body_is_parsed(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kubelet-style probe (1 s timeout) never fails while 45 MB of JSON is parsed.

    JSON bodies are parsed in a worker thread: parsed on the event loop, a body this
    large held every other request, ``/livez`` included, for seconds.
    """
    import threading
    import time

    feature = {"type": "Feature", "properties": {"ProducerName": "x" * 40, "Area": 1.0},
               "geometry": {"type": "Point", "coordinates": [-76.5123456, -8.2123456]}}
    body = json.dumps({"type": "FeatureCollection", "features": [feature] * 300_000}
                      ).encode()
    assert 40 * 2**20 < len(body) < 128 * 2**20  # under the JSON limit: it is parsed
    probes: list[float | str] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=1.0) as client:
            while not done.is_set():
                start = time.perf_counter()
                try:
                    status = client.get(f"{server}/livez").status_code
                    probes.append(time.perf_counter() - start if status == 200
                                  else f"status {status}")
                except httpx.TimeoutException:
                    probes.append("no answer within 1 s")
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        start = time.perf_counter()
        answers = [httpx.post(f"{server}/plots", content=body, timeout=300,
                              headers={"content-type": "application/json"}).status_code
                   for _ in range(2)]
        took = time.perf_counter() - start
    finally:
        done.set()
        prober.join()
    failed = [p for p in probes if isinstance(p, str)]
    slowest = max((p for p in probes if isinstance(p, float)), default=0.0)
    with capsys.disabled():
        print(f"\n/livez during two 45 MB JSON bodies: {len(probes)} probes, slowest "
              f"{slowest:.3f} s, failed {len(failed)}; /plots answered {answers} in {took:.1f} s")
    assert all(a in (400, 404) for a in answers), answers  # parsed, then refused
    assert len(probes) >= 5 and not failed, failed
