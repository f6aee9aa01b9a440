"""The map page: classify uploads for the browser, and serve the page and its results.

:func:`analyze` does the work behind ``POST /analyze`` (two dates and plots: class maps,
baseline, reports) and ``POST /analyze_scene`` (one date): class-map COGs, browser
images (:mod:`serving.http.browser_maps`), hectares per class and the baseline report, all
written into a result folder named by a random id. :func:`ui_app` is the Starlette app
mounted at ``/ui``: the page, its vendored scripts (Leaflet from npm, no CDN) and the
result files. Result folders live in ``CACAOMAP_RESULTS_DIR`` (default
``<tmp>/cacaomap-results-<uid>``, private to the user); the newest are kept, at most
``CACAOMAP_UI_KEEP`` (20) folders and ``CACAOMAP_UI_KEEP_MB`` (4096) MiB, and at most
``CACAOMAP_UI_KEEP_PER_CALLER`` (5) per client address, so that one caller cannot evict
the others' results. A result's
id is 128 random bits: its files are readable by whoever holds the link.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader, MemoryFile

from serving.areas import class_hectares, pixel_areas
from serving.classes import ClassSchema
from serving.files import write_bytes_atomic
from serving.http.browser_maps import class_map_image, picture_bands, rgb_image
from serving.inference.scene import class_map_of, is_class_map
from serving.inference.tiles import InputError, TileClassifier
from serving.radar.sensors_map import has_radar, write_sensors_map
from serving.settings import Settings, current

STATIC_DIR = Path(__file__).parent / "static"
#: Files a result folder may hold (nothing else is ever served from it).
RESULT_FILES = frozenset({
    "classes_reference.tif", "classes_current.tif", "rgb_reference.png", "rgb_current.png",
    "classes_reference.png", "classes_current.png", "report.json", "zones.geojson",
    "zones.csv", "map.png", "labels.geojson",
})
#: Largest labels upload (``POST /ui/results/<id>/labels``), in bytes.
MAX_LABELS_BYTES = 16 * 2**20
#: Whose a result folder is (never served: not in RESULT_FILES).
CALLER_FILE = ".caller"
_RESULT_ID = re.compile(r"^[0-9a-f]{32}$")


def results_root(settings: Settings | None = None) -> Path:
    """Where result folders go (the setting ``CACAOMAP_RESULTS_DIR``).

    The default, ``<tmp>/cacaomap-results-<uid>``, lives in a directory every local
    user can write to, so it is created private (0700) and refused if it is a link, not
    ours, or open to others: another user could otherwise plant files or a symlink
    that the page would serve.

    Raises:
        PermissionError: The default folder exists and is not private to this user.
    """
    settings = settings or current()
    if settings.results_dir is not None:
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        return settings.results_dir
    root = Path(tempfile.gettempdir()) / f"cacaomap-results-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    info = root.lstat()
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or info.st_mode & 0o077):
        raise PermissionError(
            f"{root} is not a private folder of this user (a link, another owner, or "
            "open to others): remove it or set CACAOMAP_RESULTS_DIR")
    return root


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def caller_key(address: str | None) -> str:
    """The name a caller's result folders are counted under: a hash of its address."""
    return hashlib.sha256((address or "unknown").encode()).hexdigest()[:16]


def _owner(folder: Path) -> str:
    try:
        return (folder / CALLER_FILE).read_text().strip()
    except OSError:
        return ""


def new_result_folder(settings: Settings | None = None, caller: str = "local"
                      ) -> tuple[str, Path]:
    """A fresh result folder for ``caller``, after pruning what is over the bounds.

    A caller's own oldest go first while it holds ``CACAOMAP_UI_KEEP_PER_CALLER``;
    then, while over ``CACAOMAP_UI_KEEP`` folders or its MiB, the oldest of whichever
    caller holds the most: one caller calling in a loop evicts its own results, never
    those of a caller holding fewer. Several workers may prune at once: a folder
    another worker removed is skipped.

    Args:
        settings: The service's settings (default: the environment's).
        caller: Whom the folder is for (:func:`caller_key` of the client's address).
    """
    settings = settings or current()
    root = results_root(settings)
    folders: list[tuple[float, int, Path, str]] = []
    for path in root.iterdir():
        if not _RESULT_ID.match(path.name):
            continue
        try:
            folders.append((path.stat().st_mtime, _folder_bytes(path), path, _owner(path)))
        except FileNotFoundError:  # pruned by another worker meanwhile
            continue
    folders.sort()

    def evict(entry: tuple[float, int, Path, str]) -> None:
        folders.remove(entry)
        shutil.rmtree(entry[2], ignore_errors=True)

    while (own := [f for f in folders if f[3] == caller]) and \
            len(own) >= settings.ui_keep_per_caller:
        evict(own[0])
    while folders and (len(folders) >= settings.ui_keep
                       or sum(f[1] for f in folders) > settings.ui_keep_mb * 2**20):
        held = Counter(f[3] for f in folders)
        most = max(held.values())
        evict(next(f for f in folders if held[f[3]] == most))
    result_id = secrets.token_hex(16)
    folder = root / result_id
    folder.mkdir()
    (folder / CALLER_FILE).write_text(caller)
    return result_id, folder


def map_summary(path: Path, schema: ClassSchema) -> tuple[dict[str, int], dict[str, float]]:
    """Pixels and ground hectares per class name of a class map."""
    with rasterio.open(path) as src:
        codes = src.read(1)
        areas = pixel_areas(src.crs, src.transform, src.height, src.width)
    counts = np.bincount(codes.ravel(), minlength=schema.num_classes)[: schema.num_classes]
    hectares = class_hectares(codes, areas, schema.num_classes)
    names = schema.names
    return ({names[i]: int(counts[i]) for i in range(schema.num_classes)},
            {names[i]: float(hectares[i]) for i in range(schema.num_classes)})


def _one_date(src: DatasetReader, upload: Path, name: str, folder: Path,
              classifier: TileClassifier, max_pixels: int) -> dict[str, Any]:
    """Class map (classified first if a scene), its image, pixels and hectares."""
    contract = classifier.contract
    schema = contract.schema
    target = folder / f"classes_{name}.tif"
    date = src.tags().get("DATE")
    if is_class_map(src) and src.crs is None:
        raise InputError(f"the {name} class map has no CRS: no hectares")
    kind = class_map_of(src, upload, target, classifier, name, max_pixels)
    picture = sensors = None
    if kind == "scene":
        rgb_image(src, contract.bands, contract.image_nodata).save(folder / f"rgb_{name}.png")
        picture = picture_bands(tuple(src.descriptions or ()), contract.bands)[1]
        if has_radar(src):  # a stacked composite: which sensor each pixel rests on
            sensors = write_sensors_map(upload, target, folder / f"sensors_{name}.tif")
    with rasterio.open(target) as written:
        date = written.tags().get("DATE") or date
    pixels, hectares = map_summary(target, schema)
    layer = class_map_image(target, schema)
    layer.save(folder / f"classes_{name}.png")
    return {"kind": kind, "date": date, "class_pixels": pixels, "hectares": hectares,
            "bounds": layer.bounds, "picture": picture, "sensors": sensors}


def analyze(uploads: dict[str, Path], classifier: TileClassifier, max_pixels: int,
            lineage: dict[str, Any] | None = None,
            open_upload: Callable[[Path], MemoryFile] | None = None,
            caller: str = "local") -> dict[str, Any]:
    """Classify ``current`` (and ``reference`` with ``zones``) for the map page.

    Args:
        uploads: ``current`` (scene or class map), optionally ``reference`` and ``zones``.
        classifier: The served model.
        max_pixels: Largest scene accepted.
        lineage: Model lineage for the baseline report.
        open_upload: Opens an upload in memory (the service's, which checks its size);
            default: the bytes as they are.
        caller: Whose result this is (:func:`caller_key`; bounds per caller).

    Returns:
        JSON for the page: classes, per-date hectares and image bounds, the baseline
        (verdicts and zones as GeoJSON) and the URLs of every file.

    Raises:
        InputError, AreaError, BaselineError, ZoneError: Naming what is wrong.
    """
    from serving.baseline.report import build_report, write_report

    opener = open_upload or (lambda path: MemoryFile(path.read_bytes()))

    schema = classifier.contract.schema
    result_id, folder = new_result_folder(caller=caller)
    try:
        dates: dict[str, Any] = {}
        for name in ("reference", "current"):
            if name not in uploads:
                continue
            with opener(uploads[name]) as memfile, memfile.open(driver="GTiff") as src:
                dates[name] = _one_date(src, uploads[name], name, folder, classifier,
                                        max_pixels)
        out: dict[str, Any] = {
            "id": result_id,
            "model": {"name": classifier.contract.name,
                      "version": classifier.contract.version},
            "classes": [{"code": c.code, "name": c.name, "colour": c.colour}
                        for c in schema.classes if c.code != schema.nodata],
            "dates": dates,
        }
        if "zones" in uploads and "reference" in dates:
            report, maps, zones = build_report(
                folder / "classes_reference.tif", folder / "classes_current.tif", schema,
                uploads["zones"], lineage=lineage, zones_geojson_only=True,
                max_zone_vertices=current().max_zone_vertices)
            write_report(report, maps, zones, schema, folder)
            out["baseline"] = {"landscape": report["landscape"],
                               "verdicts": report.get("verdicts", {})}
            out["zones"] = json.loads((folder / "zones.geojson").read_text())
        out["files"] = {p.name: f"/ui/results/{result_id}/{p.name}"
                        for p in sorted(folder.iterdir()) if p.name in RESULT_FILES}
        return out
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def checked_labels(body: bytes) -> dict[str, int]:
    """Check labelled points from the page: a FeatureCollection of points.

    Each point has finite coordinates and a ``label`` that is a class code (an integer
    from 0 to 255) or null (not labelled, or "can't tell").

    Returns:
        The number of points and of labelled points.

    Raises:
        ValueError: Naming the first point that is wrong.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"labels are not JSON ({err})") from err
    except RecursionError as err:
        raise ValueError("labels are nested too deeply to be GeoJSON points") from err
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or \
            not isinstance(doc.get("features"), list):
        raise ValueError("labels must be a GeoJSON FeatureCollection")
    labelled = 0
    for i, feature in enumerate(doc["features"]):
        if not isinstance(feature, dict):
            raise ValueError(f"feature {i} is not a GeoJSON Feature (an object)")
        geometry = feature.get("geometry") or {}
        if not isinstance(geometry, dict):
            raise ValueError(f"feature {i}: its geometry is not a GeoJSON object")
        coords = geometry.get("coordinates")
        if geometry.get("type") != "Point" or not isinstance(coords, list) or len(
                coords) < 2 or not all(isinstance(c, (int, float)) and np.isfinite(c)
                                       for c in coords[:2]):
            raise ValueError(f"feature {i} is not a point with finite coordinates")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise ValueError(f"feature {i}: its properties are not an object")
        label = props.get("label")
        if label is not None and (not isinstance(label, int) or isinstance(label, bool)
                                  or not 0 <= label <= 255):
            raise ValueError(f"feature {i}: label must be a class code or null, not "
                             f"{label!r}")
        labelled += label is not None
    return {"points": len(doc["features"]), "labelled": labelled}


def ui_app() -> Any:
    """The Starlette app mounted at ``/ui``: page, static files, result files."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def result_file(request: Request) -> Response:
        rid, name = request.path_params["rid"], request.path_params["name"]
        path = results_root() / rid / name
        if not _RESULT_ID.match(rid) or name not in RESULT_FILES or not path.is_file():
            return JSONResponse({"error": f"no result file {rid}/{name}"}, status_code=404)
        return FileResponse(path, filename=name if name.endswith((".tif", ".csv")) else None)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(url="/ui/")

    async def save_labels(request: Request) -> Response:
        rid = request.path_params["rid"]
        folder = results_root() / rid
        if not _RESULT_ID.match(rid) or not folder.is_dir():
            return JSONResponse({"error": f"no result {rid}"}, status_code=404)
        host = (request.headers.get("host") or "").lower()
        origin = request.headers.get("origin")
        if (origin is not None and origin.lower() not in (f"http://{host}",
                                                          f"https://{host}")) or (
                request.headers.get("sec-fetch-site", "").lower() in ("cross-site",
                                                                      "same-site")):
            return JSONResponse({"error": "labels are saved from this service's own "
                                 "page only"}, status_code=403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "application/geo+json"):
            return JSONResponse({"error": "send the labels as application/geo+json"},
                                status_code=415)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LABELS_BYTES:
                return JSONResponse({"error": f"labels over {MAX_LABELS_BYTES} bytes"},
                                    status_code=413)
        try:
            labelled = checked_labels(body)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        write_bytes_atomic(folder / "labels.geojson", body)
        return JSONResponse({"url": f"/ui/results/{rid}/labels.geojson",
                             "points": labelled["points"], "labelled": labelled["labelled"]})

    app = Starlette(routes=[
        Route("/", page),
        Route("/index.html", to_page),
        Route("/results/{rid}/labels", save_labels, methods=["POST"]),
        Route("/results/{rid}/{name}", result_file),
        Mount("/static", StaticFiles(directory=STATIC_DIR)),
    ])
    return PageHeaders(app)


#: Headers of every ``/ui`` answer: the page's own scripts only, never framed, no
#: sniffing, and result URLs (capabilities) never sent to another site as a referrer.
PAGE_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; "
     b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class PageHeaders:
    """ASGI middleware: :data:`PAGE_HEADERS` on every response of the page's app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the request on; add the headers to its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in PAGE_HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)
