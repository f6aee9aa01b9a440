"""Every kind of bad request a monitoring pipeline can send, against a real server.

Each case must get a 4xx whose message names the problem, never a 5xx; the server's
memory must come back to its baseline. The table of cases is printed and saved to
``tests/artifacts/bad_input.json``.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin

from serving.http.local_server import ServerURL, served_model
from serving.http.tile_payload import encode_tiles
from tests.model_factory import write_local_model
from tests.service_helpers import REPO, server_rss_mb, show_table

pytestmark = [pytest.mark.server, pytest.mark.slow]
UPLOAD_LIMIT_MB = 4
ZONE_VERTEX_LIMIT = 1000
BODY_TIMEOUT_S = 3
ROUNDS = 5
#: The server's address space is capped: a request that would exhaust memory fails
#: there (MemoryError, 500) instead of swapping the machine.
MEMORY_LIMIT_MB = 6144
RSS_GROWTH_MB = 20
JUNK_PATHS = 150
#: Counters' digits may lengthen over the rounds; a series per junk path would add
#: ~300 KB a round (17 lines of ~120 bytes each for each of 150 paths).
METRICS_GROWTH_BYTES = 10_000
BANDS = 10
CRS = "EPSG:32718"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    work = tmp_path_factory.mktemp("bad-input")
    model = write_local_model(work / "v1", tile_size=64, overlap=16, pixel_size_m=10.0)
    env = {"BENTOML_HOME": str(work / "home"), "CACAOMAP_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
           "CACAOMAP_MAX_ZONE_VERTICES": str(ZONE_VERTEX_LIMIT),
           "CACAOMAP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with served_model(model, work / "serve.log", env, cwd=REPO,
                      memory_limit_mb=MEMORY_LIMIT_MB) as url:
        url.log_path = work / "serve.log"  # type: ignore[attr-defined]
        yield url


def geotiff(path: Path, count: int = BANDS, dtype: str = "uint16", size: int = 32,
            crs: str | None = CRS, transform: Affine | None = None) -> Path:
    """A small GeoTIFF of plausible reflectances."""
    data = np.random.default_rng(0).integers(200, 3000, (count, size, size))
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count,
                       dtype=dtype, crs=crs,
                       transform=transform or from_origin(300000, 9100000, 10, 10)) as dst:
        dst.write(data.astype(dtype))
    return path


def patched_dims(path: Path, width: int, height: int) -> bytes:
    """The bytes of an uncompressed TIFF with ImageWidth/ImageLength rewritten."""
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for i in range(entries):
        at = ifd + 2 + 12 * i
        (tag,) = struct.unpack_from("<H", data, at)
        if tag in (256, 257):  # rewritten as LONG, one value
            struct.pack_into("<HII", data, at + 2, 4, 1, width if tag == 256 else height)
    return bytes(data)


@dataclass
class Case:
    """One bad request: what is sent and which words the answer must contain."""

    name: str
    send: Callable[[str], httpx.Response]
    needles: tuple[str, ...]
    status: tuple[int, ...] = (400,)


def scene_post(endpoint: str, content: bytes, filename: str = "scene.tif",
               content_type: str = "image/tiff") -> Callable[[str], httpx.Response]:
    def send(url: str) -> httpx.Response:
        return httpx.post(f"{url}/{endpoint}", timeout=120,
                          files={"scene": (filename, content, content_type)})
    return send


def raw_post(endpoint: str, content: bytes, content_type: str,
             headers: dict[str, str] | None = None) -> Callable[[str], httpx.Response]:
    """A POST of ``content`` as it is (``content_type`` empty: no Content-Type)."""
    declared = {"content-type": content_type} if content_type else {}

    def send(url: str) -> httpx.Response:
        return httpx.post(f"{url}/{endpoint}", timeout=120, content=content,
                          headers={**declared, **(headers or {})})
    return send


def smuggled_length(url: str, total_mb: int = 64) -> httpx.Response:
    """``Content-Length: 1`` and ``Transfer-Encoding: chunked`` on a raw socket.

    No HTTP client sends both. The answer is due from the headers alone: the body
    (``total_mb`` of chunks) is sent only if none has come within 10 s, and then the
    case fails whatever the status.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /classify_scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            raw = _read_response(sock)
        except TimeoutError:
            chunk = b"%x\r\n" % 2**20 + bytes(2**20) + b"\r\n"
            for _ in range(total_mb):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
            return httpx.Response(599, text=f"no answer before the {total_mb} MB body: "
                                            f"{_read_response(sock)[:200]!r}")
    head, _, body = raw.partition(b"\r\n\r\n")
    return httpx.Response(int(head.split(b" ", 2)[1]), content=body)


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP response (headers and a Content-Length body) from a socket."""
    raw = b""
    while True:
        data = sock.recv(65536)
        raw += data
        head, sep, body = raw.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if not data or (sep and length and len(body) >= int(length.group(1))):
            return raw


def baseline_post(zones: bytes, ref: bytes, cur: bytes) -> Callable[[str], httpx.Response]:
    def send(url: str) -> httpx.Response:
        return httpx.post(f"{url}/baseline", timeout=120, files={
            "reference": ("ref.tif", ref, "image/tiff"),
            "current": ("cur.tif", cur, "image/tiff"),
            "zones": ("zones.geojson", zones, "application/geo+json")})
    return send


def feature_collection(*rings: list[list[float]], crs: str | None = None) -> bytes:
    doc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"plot_id": f"p{i}"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}
        for i, ring in enumerate(rings)]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(doc).encode()


def build_cases(landscape: Path, tmp: Path) -> list[Case]:
    scene = (landscape / "images" / "s2l2a_20240820.tif").read_bytes()
    ref = (landscape / "labels" / "labels_20201215.tif").read_bytes()
    cur = (landscape / "labels" / "labels_20240820.tif").read_bytes()
    with rasterio.open(landscape / "labels" / "labels_20201215.tif") as src:
        left, _, _, top = src.bounds
    tile = np.ones((1, BANDS, 64, 64), int)

    def binary_tiles(**change: str) -> bytes:
        payload = {**encode_tiles(tile.astype(np.uint16)), **change}
        return json.dumps({"tiles": payload}).encode()

    vrt = (f'<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="UInt16" '
           f'band="1"><SimpleSource><SourceFilename>{landscape}/images/s2l2a_20240820.tif'
           f'</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>').encode()
    one_px = geotiff(tmp / "one.tif", size=1)
    npy = io.BytesIO()
    np.save(npy, np.array([{"boom": 1}], dtype=object), allow_pickle=True)
    x0, y0 = left + 500, top - 500
    square = [[x0, y0], [x0 + 300, y0], [x0 + 300, y0 - 300], [x0, y0 - 300], [x0, y0]]
    bowtie = [[x0, y0], [x0 + 300, y0 - 300], [x0 + 300, y0], [x0, y0 - 300], [x0, y0]]
    far = [[x0 + 1e6, y0], [x0 + 1e6 + 300, y0], [x0 + 1e6 + 300, y0 - 300], [x0 + 1e6, y0]]
    angles = np.linspace(0, 2 * np.pi, 2 * ZONE_VERTEX_LIMIT)[:-1]
    circle = [[x0 + 150 * np.cos(a), y0 + 150 * np.sin(a)] for a in angles]
    circle.append(circle[0])
    # A 13 KB-class file: a one-band uint8 class map declaring 40000 x 40000 pixels.
    map_bomb = patched_dims(geotiff(tmp / "map1.tif", count=1, dtype="uint8", size=1),
                            40000, 40000)
    one_strip = tmp / "one_strip.tif"
    with rasterio.open(one_strip, "w", driver="GTiff", width=1024, height=1024, count=BANDS,
                       dtype="uint16", crs=CRS, transform=from_origin(300000, 9100000, 10, 10),
                       tiled=False, blockysize=1024, compress="deflate",
                       interleave="pixel") as dst:
        dst.write(np.full((BANDS, 1024, 1024), 900, np.uint16))
    lat_200 = geotiff(tmp / "lat200.tif", count=1, dtype="uint8", crs="EPSG:4326",
                      transform=from_origin(-76.5, 200, 1e-4, 1e-4)).read_bytes()
    return [
        Case("truncated TIFF", scene_post("classify_scene_summary", scene[: len(scene) // 3]),
             ("GeoTIFF",)),
        Case("random bytes", scene_post(
            "classify_scene", np.random.default_rng(1).bytes(50_000)), ("GeoTIFF",)),
        Case("empty file", scene_post("classify_scene", b""), ("empty",)),
        Case("no body at all", raw_post("classify_scene", b"", "multipart/form-data; "
                                        "boundary=x"), ("scene",)),
        Case("VRT disguised as .tif", scene_post("classify_scene", vrt, "evil.tif"),
             ("GeoTIFF",)),
        Case("declares 100000 x 100000 px", scene_post(
            "classify_scene", patched_dims(geotiff(tmp / "big.tif", size=1), 100000, 100000)),
            ("over the limit",)),
        Case("zero-size image", scene_post("classify_scene", patched_dims(one_px, 0, 0)),
             ("GeoTIFF", "empty")),
        Case("6 bands, not 10", scene_post(
            "classify_scene", geotiff(tmp / "six.tif", count=6).read_bytes()),
            ("expected 10 bands",)),
        Case("float32, not uint16", scene_post(
            "classify_scene", geotiff(tmp / "f32.tif", dtype="float32").read_bytes()),
            ("expected dtype uint16",)),
        Case("no CRS", scene_post(
            "classify_scene_summary", geotiff(tmp / "nocrs.tif", crs=None).read_bytes()),
            ("no CRS",)),
        Case("geographic CRS, 0.01° pixels", scene_post(
            "classify_scene_summary", geotiff(tmp / "deg.tif", crs="EPSG:4326",
                                              transform=from_origin(-76.5, -8.2, 0.01, 0.01)
                                              ).read_bytes()), ("trained on 10.0 m",)),
        Case("30 m pixels for a 10 m model", scene_post(
            "classify_scene", geotiff(tmp / "l8.tif", transform=from_origin(
                300000, 9100000, 30, 30)).read_bytes()), ("resample",)),
        Case("rotated transform", scene_post(
            "classify_scene", geotiff(tmp / "rot.tif", transform=Affine(
                10, 1, 300000, 1, -10, 9100000)).read_bytes()), ("rotated",)),
        Case(f"body over {UPLOAD_LIMIT_MB} MB", scene_post(
            "classify_scene", bytes((UPLOAD_LIMIT_MB + 1) * 2**20)), ("over the limit",),
            (413,)),
        Case("chunked body, no length", lambda url: httpx.post(
            f"{url}/classify_scene", content=iter([b"--x\r\n", b"junk"]), timeout=60,
            headers={"content-type": "multipart/form-data; boundary=x"}),
            ("Content-Length",), (411,)),
        Case("Content-Length: 1 and chunked, 64 MB streamed", smuggled_length,
             ("Transfer-Encoding",)),
        Case("cross-site POST, no Content-Type, Origin evil.example", raw_post(
            "classify_tiles", json.dumps({"tiles": tile.tolist()}).encode(), "",
            {"origin": "https://evil.example"}), ("cross-origin",), (403,)),
        Case("POST without Content-Type", lambda url: httpx.post(
            f"{url}/classify_tiles", timeout=60,
            content=json.dumps({"tiles": tile.tolist()}).encode()), ("no Content-Type",),
            (415,)),
        Case("file name '../../etc/passwd' (junk)", scene_post(
            "classify_scene", b"junk", "../../etc/passwd"), ("GeoTIFF",)),
        Case("file name of 300 chars (junk)", scene_post(
            "classify_scene", b"junk", "x" * 300 + ".tif"), ("GeoTIFF",)),
        Case("URL instead of a file", lambda url: httpx.post(
            f"{url}/classify_scene", timeout=60,
            files={"scene": (None, b"http://127.0.0.1:9/secret.tif")}), ("not fetched",)),
        Case("local path instead of a file", lambda url: httpx.post(
            f"{url}/classify_scene", timeout=60, files={"scene": (None, b"/etc/passwd")}),
            ("not fetched",)),
        Case("BentoML pickle payload", raw_post(
            "classify_tiles", pickle.dumps({"tiles": tile}), "application/vnd.bentoml+pickle"),
            ("pickle",), (415,)),
        Case(".npy holding a pickle", raw_post(
            "classify_tiles", npy.getvalue(), "application/octet-stream"),
            ("takes application/json",), (415,)),
        Case(".npy as a file part", lambda url: httpx.post(
            f"{url}/classify_tiles", timeout=60,
            files={"tiles": ("t.npy", npy.getvalue(), "application/octet-stream")}),
            ("takes application/json",), (415,)),
        Case("scene as a URL-encoded form", lambda url: httpx.post(
            f"{url}/classify_scene", timeout=60, data={"scene": "http://127.0.0.1:9/x.tif"}),
            ("multipart",), (415,)),
        Case("scene sent as JSON", raw_post("classify_scene", b'{"scene": "x"}',
                                            "application/json"), ("multipart",), (415,)),
        Case("NaN in tiles", raw_post(
            "classify_tiles", json.dumps({"tiles": (tile * np.nan).tolist()}).encode(),
            "application/json"), ("NaN", "nan", "JSON", "json")),
        Case("Infinity in tiles", raw_post(
            "classify_tiles", json.dumps({"tiles": (tile * np.inf).tolist()}).encode(),
            "application/json"), ("NaN", "inf", "JSON", "json")),
        Case("ragged tiles", raw_post(
            "classify_tiles", b'{"tiles": [[[[1, 2], [3]]]]}', "application/json"),
            ("ragged",)),
        Case("tiles of 6 bands", raw_post(
            "classify_tiles", json.dumps({"tiles": np.ones((1, 6, 64, 64), int).tolist()}
                                         ).encode(), "application/json"), ("got (1, 6",)),
        Case("binary tiles: bytes short of the shape", raw_post(
            "classify_tiles", binary_tiles(data=base64.b64encode(b"12345678").decode()),
            "application/json"), ("bytes; shape",)),
        Case("binary tiles: not base64", raw_post(
            "classify_tiles", binary_tiles(data="%%%"), "application/json"), ("base64",)),
        Case("body that is not JSON", raw_post("classify_tiles", b"{tiles: [", "application/json"),
             ("JSON", "json")),
        Case("Host: evil.example", raw_post("model", b"{}", "application/json",
                                            {"host": "evil.example"}), ("not allowed",)),
        Case("zones not GeoJSON", baseline_post(b"<kml>nope</kml>", ref, cur), ("GeoJSON",)),
        Case("zones: OGR VRT XML", baseline_post(
            b'<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>/etc/passwd'
            b"</SrcDataSource></OGRVRTLayer></OGRVRTDataSource>", ref, cur), ("GeoJSON",)),
        Case("zones: empty collection", baseline_post(feature_collection(), ref, cur),
             ("no zones",)),
        Case("zones: self-intersecting", baseline_post(
            feature_collection(square, bowtie, crs=CRS), ref, cur), ("Self-intersection",)),
        Case("zones outside the scene", baseline_post(
            feature_collection(far, crs=CRS), ref, cur), ("none of the 1 zones overlaps",)),
        Case("zones: point, not polygon", baseline_post(json.dumps(
            {"type": "Point", "coordinates": [-76.5, -8.2]}).encode(), ref, cur),
            ("polygons",)),
        Case("zones: unknown CRS", baseline_post(
            feature_collection(square, crs="EPSG:999999"), ref, cur), ("CRS",)),
        Case("scene in one 20 MiB DEFLATE strip", scene_post(
            "classify_scene", one_strip.read_bytes()), ("compressed strips",)),
        Case("class map declares 40000 x 40000 px (/analyze_scene)", scene_post(
            "analyze_scene", map_bomb), ("over the limit",)),
        Case("class map declares 40000 x 40000 px (/baseline)", baseline_post(
            feature_collection(square, crs=CRS), map_bomb, cur), ("over the limit",)),
        Case("class map at latitude 200 (/analyze_scene)", scene_post(
            "analyze_scene", lat_200), ("impossible georeferencing",)),
        Case("class map at latitude 200 (/baseline)", baseline_post(
            feature_collection(square, crs=CRS), lat_200, lat_200),
            ("impossible georeferencing",)),
        Case("zones nested 100000 deep", baseline_post(
            b"[" * 100_000 + b"]" * 100_000, ref, cur), ("nested too deeply",)),
        Case(f"zones over {ZONE_VERTEX_LIMIT} vertices", baseline_post(
            feature_collection(circle, crs=CRS), ref, cur), ("vertices",)),
        Case("class map without CRS", baseline_post(
            feature_collection(square, crs=CRS),
            geotiff(tmp / "map.tif", count=1, dtype="uint8", crs=None).read_bytes(), cur),
            ("no CRS",)),
    ]


def test_every_bad_request_gets_a_4xx_naming_the_problem(
    server: ServerURL, landscape: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = scene_post("classify_scene_summary",
                      (landscape / "images" / "s2l2a_20240820.tif").read_bytes())
    assert good(server).status_code == 200  # warm: baseline memory includes a scene
    before = server_rss_mb(server.pid)
    cases = build_cases(landscape, tmp_path)
    rows, failures, rss, metrics = [], [], [before], []
    for _ in range(ROUNDS):  # several rounds: memory that grows per request shows
        rows = []
        for i in range(JUNK_PATHS):  # each its own metric label before the fix
            httpx.get(f"{server}/{i:04d}{'x' * 2000}", headers={"host": "evil.example"})
        for case in cases:
            r = case.send(server)
            message = r.text.replace("\n", " ")
            ok = r.status_code in case.status and any(n in message for n in case.needles)
            rows.append([case.name, str(r.status_code), message[:150],
                         "ok" if ok else "FAIL"])
            if not ok:
                failures.append(f"{case.name}: {r.status_code} {message[:300]}")
        rss.append(server_rss_mb(server.pid))
        metrics.append(len(httpx.get(f"{server}/metrics").content))
    # Round 1 loads what the error paths import (geopandas, pyproj for zones...); from
    # then on memory must stay flat.
    warm, after = rss[1], rss[-1]
    rows.append([f"server RSS (MB): start, after each of {ROUNDS} rounds", "",
                 " → ".join(f"{v:.0f}" for v in rss),
                 "ok" if after - warm <= RSS_GROWTH_MB else "FAIL"])
    metrics_ok = metrics[-1] - metrics[0] <= METRICS_GROWTH_BYTES
    rows.append([f"/metrics bytes after each round ({JUNK_PATHS} junk paths a round)", "",
                 " → ".join(f"{v:,}" for v in metrics), "ok" if metrics_ok else "FAIL"])
    show_table(capsys, f"{len(cases)} bad requests x {ROUNDS} rounds against bentoml serve",
               ["case", "status", "message", "verdict"], rows, "bad_input.json")
    assert not failures, "\n".join(sorted(set(failures)))
    assert httpx.get(f"{server}/livez").status_code == 200
    assert good(server).status_code == 200
    assert metrics_ok, f"/metrics grew with junk paths: {metrics}"
    assert after - warm <= RSS_GROWTH_MB, (
        f"RSS grew {after - warm:.0f} MB over {ROUNDS - 1} rounds of bad requests")
    # A client's mistake is one warning line in the server's log, never a traceback.
    log = server.log_path.read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:3000]
    assert log.count("client error 4") >= ROUNDS


def test_geographic_scene_at_sentinel2_resolution_is_classified(
    server: ServerURL, tmp_path: Path
) -> None:
    # ~10 m pixels in degrees near Tocache: handled, with ground hectares.
    deg = 10 / 111_320
    path = geotiff(tmp_path / "geo.tif", crs="EPSG:4326", size=64,
                   transform=from_origin(-76.5, -8.2, deg, deg))
    r = scene_post("classify_scene_summary", path.read_bytes())(server)
    assert r.status_code == 200, r.text
    total = sum(r.json()["hectares"].values())
    # 64 x 64 pixels of ~10 m x 9.9 m (cos 8.2° shrinks longitude): ~40.5 ha.
    assert total == pytest.approx(64 * 64 * 0.01 * np.cos(np.radians(8.2)), rel=0.01)


def test_hostile_file_names_never_reach_the_disk(server: ServerURL, landscape: Path) -> None:
    scene = (landscape / "images" / "s2l2a_20240820.tif").read_bytes()
    reference = scene_post("classify_scene_summary", scene)(server).json()["class_pixels"]
    for name in ("../../../../tmp/cacaomap-escape.tif", "x" * 300 + ".tif", "a\r\nb.tif",
                 "..\\..\\evil.tif", "$(touch pwned).tif"):
        r = scene_post("classify_scene_summary", scene, name)(server)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["class_pixels"] == reference
    assert not Path("/tmp/cacaomap-escape.tif").exists()
    assert not (REPO / "pwned").exists()


def test_stalled_uploads_neither_hold_slots_nor_stay(server: ServerURL) -> None:
    """70 clients announce a 1 MB body, send 1 KB and stall; others are still served."""
    host, port = server.removeprefix("http://").rsplit(":", 1)
    stalled = []
    for _ in range(70):  # more than CACAOMAP_MAX_IN_FLIGHT (64)
        sock = socket.create_connection((host, int(port)), timeout=BODY_TIMEOUT_S + 30)
        sock.sendall(b"POST /classify_scene HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 1048576\r\n\r\n" + bytes(1024))
        stalled.append(sock)
    try:
        r = httpx.post(f"{server}/model", json={}, timeout=30)
        assert r.status_code == 200, r.text  # no slot is held by a stalled body
        answers = [_read_response(sock) for sock in stalled]
    finally:
        for sock in stalled:
            sock.close()
    statuses = {int(a.split(b" ", 2)[1]) for a in answers if a}
    assert statuses == {408}, answers[:2]
    assert b"stalled" in answers[0]
    assert httpx.post(f"{server}/model", json={}, timeout=30).status_code == 200

