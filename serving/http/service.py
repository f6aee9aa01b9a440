"""The BentoML service: tiles and whole scenes classified on ONNX Runtime.

Start it with ``bentoml serve serving.http.service:CacaoMap`` (``CACAOMAP_MODEL`` names
the model: a models/ folder, or ``bento:<name>:<version>`` from the BentoML store;
default the newest ``models/cacaomap/v<N>``). Endpoints: ``/classify_tiles`` (adaptive
batching), ``/classify_scene`` (GeoTIFF in, COG class map out),
``/classify_scene_summary`` (per-class pixels and hectares as JSON), ``/baseline``,
``/analyze`` and ``/analyze_scene`` (the map page), ``/plots`` and ``/store`` (plot
checks against the store of ``CACAOMAP_STORE``), ``/model`` (the contract), and
BentoML's ``/livez``, ``/readyz`` and ``/metrics``.

The model is checked once per deployment, before any worker starts
(``@bentoml.on_deployment``: file hash, embedded contract vs sidecar), so a missing or
corrupt model stops ``bentoml serve`` with the reason and a non-zero exit; each worker
loads it in ``__init__``. Tile payloads are checked against the loaded contract before
they reach a batch (a tile with the wrong band count, size or dtype gets a 4xx). Settings
come from :func:`serving.settings.current`, read once. The guards of
:mod:`serving.http.guards` (hosts, token, body size, media types, load) sit in front of
every route, and the BentoML fixes of :mod:`serving.http.bentoml_fixes` are applied here,
explicitly. Uploads are opened from memory with the GTiff driver only, and each
request's files live in BentoML's per-request folder, emptied after the response.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from bentoml.validators import ContentType, DType
from pydantic import BeforeValidator, WithJsonSchema
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, MemoryFile

from serving.areas import AreaError
from serving.http import bentoml_fixes, body_guards, drain, execution_provider, guards
from serving.http.map_page import ui_app
from serving.http.tile_payload import CLIENT_SCHEMA, TILES_SCHEMA, tiles_from_payload
from serving.http.work_queues import BoundedPool, DeadlinePassed, QueueFull
from serving.inference.contract import ContractError, ModelContract, load_model_dir
from serving.inference.model_store import resolve_model_dir
from serving.inference.scene import SceneResult, class_map_of, classify_scene
from serving.inference.session import create_session, scene_ort_threads
from serving.inference.tiles import InputError, TileClassifier
from serving.radar.sensors_map import sensor_shares
from serving.settings import current

T = TypeVar("T")


def yield_cpu_to_tiles() -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread).

    The scene session runs its compute in the calling thread when it has one intra-op
    thread (the default on two cores), so all of a scene's work yields to tile
    requests; where the platform has no per-thread priority this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SETTINGS.scene_nice)


log = logging.getLogger(__name__)

#: This process's settings. Read at import: the batching limits decorate the class.
SETTINGS = current()


class LoadedModel:
    """The contract of the model this worker serves, once ``__init__`` has loaded it.

    Tile payloads are validated against it while the request is parsed, before BentoML
    batches requests together (a wrong shape must not reach a batch).
    """

    contract: ModelContract | None = None


def _tiles_for_loaded_model(value: Any) -> Any:
    contract = LoadedModel.contract
    if contract is None:
        raise ValueError("the model is not loaded yet; retry when /readyz answers 200")
    return tiles_from_payload(value, contract)


#: Adaptive batching limits of /classify_tiles. The latency is BentoML's deadline: a
#: request queued longer is refused (503). A full batch of 32 256-px tiles takes ~2.5 s
#: on 2 CPU cores, so the deadline leaves room for a few batches and a scene running
#: beside them: a monitoring caller would rather wait than retry.
TILES_API = (bentoml.api(batchable=True, batch_dim=(0, 0),
                         max_batch_size=SETTINGS.max_batch_size,
                         max_latency_ms=SETTINGS.max_latency_ms)
             if SETTINGS.batching else bentoml.api)

Tiles = Annotated[
    np.ndarray,
    BeforeValidator(_tiles_for_loaded_model),
    WithJsonSchema(CLIENT_SCHEMA, mode="validation"),  # /schema.json: BentoML's client
    WithJsonSchema(TILES_SCHEMA, mode="serialization"),  # /docs.json: OpenAPI
]
#: Class codes (N, tile, tile); the dtype tells BentoML's client to decode them as uint8.
ClassCodes = Annotated[np.ndarray, DType("uint8")]
GeoTiff = Annotated[Path, ContentType("image/tiff")]


def _optional_upload(value: Any) -> Any:
    """An optional file part saved as BentoML saves required ones (a request temp file).

    BentoML turns ``Path`` parameters into uploads, but not ``Path | None``: its file
    schema cannot sit in a union. This does the same decoding for the optional case.
    """
    from bentoml.validators import FileSchema

    return None if value is None else FileSchema(content_type="image/tiff").decode(value)


#: A plots body: GeoJSON, or ``{"plots": GeoJSON, "evidence": ...}`` (see plots_api).
PlotsBody = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "description": "GeoJSON FeatureCollection of plots (EUDR: Points "
    "with an Area in ha, Polygons, MultiPolygons)"})]


def _caller(ctx: bentoml.Context) -> str:
    """Whom a result is counted against: the client's address, hashed."""
    from serving.http.map_page import caller_key

    client = ctx.request.client
    return caller_key(client.host if client else None)


def _raw_json_body(ctx: bentoml.Context) -> bytes | None:
    """The request's JSON bytes as the client sent them (kept by the body reader)."""
    try:
        request = ctx.request
    except LookupError:
        return None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/json", "application/geo+json"):
        return None
    return body_guards.spooled_body(request.scope)


#: Clouds found by a model in the scene itself (``csmask``), or not (``none``).
CloudMask = Literal["none", "csmask"]
#: An optional GeoTIFF upload (a clear-sky mask).
OptionalGeoTiff = Annotated[Path | None, BeforeValidator(_optional_upload)]


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size == 0:
        raise InvalidArgument("the uploaded scene is empty (0 bytes)")
    if size > SETTINGS.max_upload_bytes:
        raise InvalidArgument(f"the uploaded scene is {size:,} bytes, over the limit of "
                              f"{SETTINGS.max_upload_bytes:,}")


def _open_upload(path: Path) -> MemoryFile:
    """The uploaded bytes as an in-memory GeoTIFF (never a path GDAL could follow)."""
    _check_size(path)
    return MemoryFile(path.read_bytes())


def _open_with_mask(stack: contextlib.ExitStack, upload: Path, mask: Path | None
                    ) -> tuple[DatasetReader, DatasetReader | None]:
    """An upload and its optional mask upload, opened from memory for the ``with``."""
    src = stack.enter_context(stack.enter_context(_open_upload(upload)).open(driver="GTiff"))
    if mask is None:
        return src, None
    return src, stack.enter_context(
        stack.enter_context(_open_upload(mask)).open(driver="GTiff"))


#: GPUs asked of BentoML (``CACAOMAP_GPUS``; the GPU Bento sets 1).
RESOURCES: dict[str, Any] = {"resources": {"gpu": SETTINGS.gpus}} if SETTINGS.gpus else {}


#: Seconds a request may take (BentoML's traffic timeout); queued work waits no longer.
REQUEST_TIMEOUT_S = 900


@bentoml.service(name="cacaomap", traffic={"timeout": REQUEST_TIMEOUT_S}, workers=1,
                 **RESOURCES)
class CacaoMap:
    """Land-cover classification of Sentinel-2 tiles and scenes."""

    @bentoml.on_deployment
    def check_model() -> None:
        """Refuse to start (exit 1, naming why) unless the model is whole and consistent.

        Runs once in ``bentoml serve``'s own process, before any worker; the store of
        ``CACAOMAP_STORE``, if one is given, must open too.
        """
        from serving.http.execution_provider import check_providers
        from serving.inference.session import ProviderError
        from serving.references.layers import open_layers
        from serving.references.spec import SpecError
        from serving.store.reader import StoreError, open_store

        try:
            onnx_path, _ = load_model_dir(resolve_model_dir())
            check_providers(onnx_path)
            if SETTINGS.store is not None:
                open_store(SETTINGS.store)
            open_layers(SETTINGS.reference_layers)
        except (ContractError, StoreError, ProviderError, SpecError) as err:
            sys.exit(f"cacaomap: cannot serve: {err}")

    def __init__(self) -> None:
        """Load the model (contract-checked) into an ONNX Runtime session."""
        onnx_path, contract = load_model_dir(resolve_model_dir())
        self.classifier = TileClassifier(onnx_path, contract)
        # Scenes get a session of their own with fewer threads: tile requests keep a
        # thread pool that a running scene cannot fill.
        self.scene_classifier = TileClassifier(onnx_path, contract, session=create_session(
            onnx_path, intra_op_threads=SETTINGS.scene_ort_threads or scene_ort_threads()))
        self.contract = contract
        LoadedModel.contract = self.contract
        from serving.references.layers import open_layers
        from serving.store.reader import StoreVersions

        self._stores = StoreVersions(SETTINGS.store)
        self.references = open_layers(SETTINGS.reference_layers)
        self._scenes = BoundedPool("scenes", SETTINGS.scene_threads,
                                   SETTINGS.max_queued_scenes, "CACAOMAP_MAX_QUEUED_SCENES",
                                   initializer=yield_cpu_to_tiles)
        # plots have threads of their own: they never wait behind a scene
        self._plots = BoundedPool("plots", SETTINGS.plot_threads, SETTINGS.max_queued_plots,
                                  "CACAOMAP_MAX_QUEUED_PLOTS")
        execution_provider.record_runtime(self.classifier.provider, contract.name, contract.version)
        log.info("model %s %s on %s", self.contract.name, self.contract.version,
                 self.classifier.provider)

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded."""
        return getattr(self, "classifier", None) is not None

    @TILES_API
    def classify_tiles(self, tiles: Tiles) -> ClassCodes:
        """Classify tiles (N, bands, tile, tile) into class codes (N, tile, tile), uint8."""
        try:
            return self.classifier.classify(tiles)
        except InputError as err:
            raise InvalidArgument(str(err)) from err

    def _classify(self, scene: Path, out_dir: Path, mask: Path | None = None,
                  cloud_mask: CloudMask = "none") -> SceneResult:
        try:
            with contextlib.ExitStack() as stack:
                src, clear = _open_with_mask(stack, scene, mask)
                return classify_scene(src, out_dir / "classes.tif", self.scene_classifier,
                                      max_pixels=SETTINGS.max_pixels, mask=clear,
                                      cloud_mask=cloud_mask)
        except InvalidArgument:
            raise
        except (InputError, AreaError) as err:
            raise InvalidArgument(str(err)) from err
        except RasterioError as err:
            raise InvalidArgument(f"the upload is not a readable GeoTIFF: {err}") from err

    async def _in_scene_pool(self, work: Callable[..., T], *args: Any) -> T:
        """Run scene-sized work in the scene threads, never in the tile requests' thread.

        BentoML runs every sync API in one worker thread: a scene (minutes for a full
        Sentinel-2 tile) there would hold every queued tile request past its deadline.
        The scene threads also run at a lower CPU priority (:func:`yield_cpu_to_tiles`).
        """
        return await self._in_pool(self._scenes, work, *args)

    async def _in_pool(self, pool: BoundedPool, work: Callable[..., T], *args: Any) -> T:
        """Run work in a bounded pool: a full queue, or a deadline passed, is 503."""
        try:
            return await pool.run(work, *args, deadline_s=REQUEST_TIMEOUT_S)
        except (QueueFull, DeadlinePassed) as err:
            raise ServiceUnavailable(str(err)) from err

    @bentoml.api
    async def classify_scene(self, scene: GeoTiff, ctx: bentoml.Context,
                             mask: OptionalGeoTiff = None, cloud_mask: CloudMask = "none",
                             ) -> GeoTiff:
        """Classify a GeoTIFF scene; returns the class map as a Cloud Optimized GeoTIFF.

        The scene is the model's bands, or a composite (those and ``clear_count``: never
        seen pixels come out nodata). ``mask``: optional clear-sky mask on the scene's
        grid (one band, non-zero = clear); masked pixels come out nodata.
        ``cloud_mask=csmask``: the ukis-csmask model finds clouds and shadows in the
        scene itself (ONNX Runtime, no SCL needed).
        """
        result = await self._in_scene_pool(self._classify, scene, Path(ctx.temp_dir),
                                           mask, cloud_mask)
        return result.path

    @bentoml.api
    async def classify_scene_summary(self, scene: GeoTiff, ctx: bentoml.Context,
                                     mask: OptionalGeoTiff = None,
                                     cloud_mask: CloudMask = "none") -> dict[str, Any]:
        """Classify a GeoTIFF scene (or composite, optional mask): pixels and hectares."""
        result = await self._in_scene_pool(self._classify, scene, Path(ctx.temp_dir),
                                           mask, cloud_mask)
        # a stacked optical + radar composite: how much was classified from radar alone
        sensors = await self._in_scene_pool(sensor_shares, scene, result.path)
        return ({"sensors": sensors} if sensors else {}) | {
            "width": result.width,
            "height": result.height,
            "crs": result.crs,
            "class_pixels": result.class_pixels,
            "hectares": result.hectares,
            "model": {"name": self.contract.name, "version": self.contract.version,
                      "onnx_sha256": self.contract.onnx_sha256},
        }

    @bentoml.api
    async def baseline(
        self, reference: GeoTiff, current: GeoTiff, zones: Path, ctx: bentoml.Context,
        reference_mask: OptionalGeoTiff = None, current_mask: OptionalGeoTiff = None,
    ) -> dict[str, Any]:
        """Deforestation baseline from two dates (+ zones GeoJSON): the JSON report.

        Each date is a class map (this model's ``/classify_scene`` output), a scene or a
        composite, classified first (with its optional clear-sky mask); unobserved
        pixels never count as loss, and plots observed too little are
        ``insufficient_data``. The report carries the model's lineage.
        """
        return await self._in_scene_pool(self._baseline, reference, current, zones,
                                         Path(ctx.temp_dir), reference_mask, current_mask)

    def _baseline(self, reference: Path, current: Path, zones: Path, work: Path,
                  reference_mask: Path | None = None, current_mask: Path | None = None,
                  ) -> dict[str, Any]:
        from serving.baseline.change import BaselineError
        from serving.baseline.report import build_report

        try:
            paths = []
            for name, upload, mask in (("reference", reference, reference_mask),
                                       ("current", current, current_mask)):
                target = work / f"{name}_classes.tif"
                with contextlib.ExitStack() as stack:
                    src, clear = _open_with_mask(stack, upload, mask)
                    class_map_of(src, upload, target, self.scene_classifier, name,
                                 SETTINGS.max_pixels, mask=clear)
                paths.append(target)
            lineage = self._lineage()
            report, _, _ = build_report(paths[0], paths[1], self.contract.schema, zones,
                                        lineage=lineage, zones_geojson_only=True,
                                        max_zone_vertices=SETTINGS.max_zone_vertices)
            return report
        except InvalidArgument:
            raise
        except (BaselineError, AreaError, InputError, ValueError) as err:
            raise InvalidArgument(str(err)) from err
        except RasterioError as err:
            raise InvalidArgument(f"a class map is not a readable GeoTIFF: {err}") from err

    def _lineage(self) -> dict[str, Any]:
        """The served model, as reports record it."""
        return {"model": {"name": self.contract.name, "version": self.contract.version,
                          "onnx_sha256": self.contract.onnx_sha256,
                          "mlflow_run_id": self.contract.mlflow_run_id}}

    def _analyze(self, uploads: dict[str, Path], caller: str) -> dict[str, Any]:
        from serving.baseline.change import BaselineError
        from serving.http.map_page import analyze

        try:
            return analyze(uploads, self.scene_classifier, SETTINGS.max_pixels, self._lineage(),
                           open_upload=_open_upload, caller=caller)
        except (BaselineError, AreaError, InputError, ValueError) as err:
            raise InvalidArgument(str(err)) from err
        except RasterioError as err:
            raise InvalidArgument(f"an upload is not a readable GeoTIFF: {err}") from err

    @bentoml.api(route="/analyze")
    async def analyze(self, reference: GeoTiff, current: GeoTiff, zones: Path,
                      ctx: bentoml.Context) -> dict[str, Any]:
        """For the map page: two dates and plots, classified, compared and rendered.

        Each date is a scene or a class map; the JSON carries the URLs of every file.
        """
        for upload in (reference, current):
            _check_size(upload)
        return await self._in_scene_pool(
            self._analyze, {"reference": reference, "current": current, "zones": zones},
            _caller(ctx))

    @bentoml.api(route="/analyze_scene")
    async def analyze_scene(self, scene: GeoTiff, ctx: bentoml.Context) -> dict[str, Any]:
        """For the map page: one scene (or class map) classified and rendered."""
        _check_size(scene)
        return await self._in_scene_pool(self._analyze, {"current": scene}, _caller(ctx))

    @bentoml.api(route="/plots")
    async def plots(self, body: PlotsBody, /, ctx: bentoml.Context) -> dict[str, Any]:
        """Check farm plots (EUDR GeoJSON) against the store: one record per plot.

        The body is a GeoJSON FeatureCollection of Points (with ``Area`` in ha, up to
        4 ha), Polygons and MultiPolygons; ``?evidence=true`` adds a picture per plot
        (a handful of plots). Each feature comes back with ``properties.cacaomap``:
        forest at the reference date, loss by driver, share observed, confidence,
        verdict and flags; a plot that cannot be checked gets ``verdict: "error"``.
        """
        from serving.http.plots_api import PlotsRequestError, check_request, request_options

        store = self._stores.current()
        if store is None and not self.references:
            raise NotFound("this service has no baseline store: start it with "
                           "CACAOMAP_STORE=<store folder> (cacaomap store build) or "
                           "CACAOMAP_REFERENCE_LAYERS=spec=path")
        try:
            doc, evidence, area = request_options(body, dict(ctx.request.query_params))
        except PlotsRequestError as err:
            raise InvalidArgument(str(err)) from err
        raw = _raw_json_body(ctx)
        if raw is not None and doc is body:
            doc = raw  # decimals counted as the client wrote them
        try:
            return await self._in_pool(self._plots, check_request, doc, store, SETTINGS,
                                             evidence, area, self.references)
        except PlotsRequestError as err:
            raise InvalidArgument(str(err)) from err

    @bentoml.api(route="/store")
    def store_info(self) -> dict[str, Any]:
        """The store plots are checked against: periods, cutoff, model, cells, landscape."""
        store = self._stores.current()
        if store is None:
            raise NotFound("this service has no baseline store (CACAOMAP_STORE)")
        from serving.http.plots_api import without_paths

        meta = without_paths(store.meta) | {"version": store.lineage["store"]["version"]}
        return {k: meta.get(k) for k in ("created", "version", "periods", "cutoff",
                                         "reference_ends_by_cutoff", "model", "thresholds",
                                         "min_forest_ha", "grid", "region", "landscape")} | {
            "cells": len(meta.get("cells", [])),
            "failed_cells": [c["id"] for c in meta.get("cells", []) if c.get("failed")],
            "reference_layers": [{"name": layer.name, "title": layer.spec.title,
                                  "says": layer.spec.says} for layer in self.references]}

    @bentoml.api(route="/reference_layer")
    def reference_layer(self, name: str, bbox: list[float]) -> dict[str, Any]:
        """One reference layer drawn over ``bbox`` (west, south, east, north; at most 1°).

        Answers ``{"png": <base64 RGBA PNG>, "bbox": ...}``: forest at the cutoff in
        green, loss or alerts after it in red, a period across the cutoff in orange.
        """
        from serving.references.picture import layer_png
        from serving.references.spec import SpecError

        layer = next((x for x in self.references if x.name == name), None)
        if layer is None:
            raise NotFound(f"no reference layer {name!r}; this service has "
                           f"{', '.join(x.name for x in self.references) or 'none'} "
                           "(CACAOMAP_REFERENCE_LAYERS)")
        if len(bbox) != 4:
            raise InvalidArgument("bbox is west, south, east, north")
        try:
            png = layer_png(layer, (bbox[0], bbox[1], bbox[2], bbox[3]))
        except SpecError as err:
            raise InvalidArgument(str(err)) from err
        return {"name": name, "bbox": bbox, "png": base64.b64encode(png).decode()}

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """The model contract in force (classes, bands, normalisation, lineage).

        ``provider``: the ONNX Runtime execution provider the tiles run on; ``tta``: the
        test-time augmentation of every classification (``CACAOMAP_TTA``).
        """
        return dict(json.loads(self.contract.to_json())) | {
            "provider": self.classifier.provider, "tta": self.classifier.tta}


bentoml_fixes.apply()
drain.install()  # SIGTERM drains before the worker stops
for _guard in guards.GUARDS:  # outermost first
    CacaoMap.add_asgi_middleware(_guard)  # type: ignore[attr-defined]
CacaoMap.add_asgi_middleware(execution_provider.ReadyzBody)  # type: ignore[attr-defined]
CacaoMap.mount_asgi_app(ui_app(), path="/ui")  # type: ignore[attr-defined]
