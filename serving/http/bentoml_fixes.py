"""Fixes for BentoML 1.4.39 behaviour this service cannot live with.

Each was found by a test and is applied once, at import of the service, by
:func:`apply`, which the service calls explicitly at import. Re-check each one when
BentoML is upgraded; each docstring names the BentoML code it replaces.

- :func:`harden_multipart`: malformed multipart bodies answered 500, and a text form
  field where a file is expected was downloaded as a URL.
- :func:`cancel_timeout_timers`: the request timer was never cancelled, keeping every
  request's context alive for the whole timeout (a memory leak under load), and a
  request whose app ended without answering (an abandoned upload) held shutdown for
  the whole timeout.
- :func:`bound_cork_wait`: the adaptive-batching queue learned queueing delay as the
  time to wait for a batch, so latency stayed high long after an overload.
- :func:`fast_json_responses`: responses were encoded with the stdlib ``json``, the
  largest cost of a tile request after inference.
- :func:`bound_metric_labels`: every request path became its own Prometheus label, so
  junk paths (even ones the guards refuse) grew ``/metrics`` without bound.
- :func:`reject_bad_root_json`: a body that is not JSON, sent to an API whose one
  positional argument is the whole body (``/plots``), answered 500.
- :func:`quiet_client_errors`: every 4xx (a client's typo) was logged as a Python
  traceback at error level, indistinguishable from a fault of the service.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Longest file name kept from an upload.
MAX_FILENAME = 64

#: The BentoML code each fix replaces: (module, attribute, first 16 hex digits of the
#: sha256 of its source in BentoML 1.4.39). A test compares them with the installed
#: BentoML, so an upgrade that changes any of them fails until the fix is re-checked.
UPSTREAM: dict[str, tuple[tuple[str, str, str], ...]] = {
    "harden_multipart": (
        ("_bentoml_impl.serde", "MultipartSerde.parse_request", "65de1b4c289aac56"),
        ("_bentoml_impl.serde", "MultipartSerde.ensure_file", "962fb19eb99f95a5"),
    ),
    "cancel_timeout_timers": (
        ("bentoml._internal.server.http.traffic", "TimeoutMiddleware.__call__",
         "fd8b9e3da28ed2b4"),
    ),
    "bound_cork_wait": (
        ("bentoml._internal.marshal.dispatcher", "Optimizer.log_outbound",
         "7f783eacef39b0ea"),
        ("bentoml._internal.marshal.dispatcher", "CorkDispatcher.outbound_call",
         "d380666220b880ef"),
    ),
    "fast_json_responses": (
        ("_bentoml_sdk.io_models", "IORootModel.model_dump_json", "7eb4eaa0ae883ba1"),
    ),
    "reject_bad_root_json": (
        ("_bentoml_sdk.io_models", "IORootModel.model_validate_json", "91bb58747b931a55"),
    ),
    "quiet_client_errors": (
        # http_app.log_exception as the endpoint wrapper imports it (same source).
        ("_bentoml_impl.server.app", "log_exception", "8e37ab2b4433dff1"),
    ),
    "bound_metric_labels": (
        ("bentoml._internal.server.http.instruments",
         "RunnerTrafficMetricsMiddleware.__call__", "b7dc25ae0208d7b2"),
    ),
}
#: The ``endpoint`` label of every path that is not a route of the service.
OTHER_PATHS_LABEL = "other"


def upstream_digest(module: str, attribute: str) -> str:
    """First 16 hex digits of the sha256 of an upstream attribute's source code.

    Meaningful before :func:`apply` only (afterwards it is this module's replacement).
    """
    import hashlib
    import importlib
    import inspect

    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def safe_filename(name: str | None) -> str:
    """An upload's file name reduced to a short, harmless base name.

    BentoML keeps the client's name as the suffix of the temporary file; a name with
    path separators, control characters or 300 characters must not reach the disk.
    """
    last = (name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", last)
    base = base.lstrip(".") or "upload"
    return base[-MAX_FILENAME:]


def harden_multipart() -> None:
    """Make BentoML's multipart parsing answer 400, and take files only as bytes.

    - A malformed multipart body (no boundary, broken parts) raises inside Starlette's
      parser, which BentoML answers with a 500; it becomes a 400 naming the problem.
    - A text form field where a file is expected is treated by BentoML as a URL and
      downloaded; this service refuses that (400).
    - Uploaded file names are reduced by :func:`safe_filename`.
    """
    from _bentoml_impl.serde import MultipartSerde
    from bentoml.exceptions import InvalidArgument
    from python_multipart.exceptions import MultipartParseError
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException

    parse = MultipartSerde.parse_request

    async def parse_or_400(self: Any, request: Any, cls: Any) -> Any:
        try:
            return await parse(self, request, cls)
        except HTTPException as err:  # Starlette's own 400 for a missing boundary
            raise InvalidArgument(f"malformed multipart/form-data body: {err.detail}"
                                  ) from err
        except (MultiPartException, MultipartParseError, AssertionError, KeyError,
                UnicodeDecodeError) as err:
            raise InvalidArgument(f"malformed multipart/form-data body: {err}") from err

    async def uploaded_only(obj: object) -> object:
        if isinstance(obj, UploadFile):
            obj.filename = safe_filename(obj.filename)
            return obj
        raise InvalidArgument(
            f"files must be uploaded as multipart file parts; got a text field "
            f"({str(obj)[:80]!r}): URLs and paths are not fetched")

    MultipartSerde.parse_request = parse_or_400  # type: ignore[method-assign]
    MultipartSerde.ensure_file = staticmethod(uploaded_only)  # type: ignore[method-assign]


def cancel_timeout_timers() -> None:
    """Make BentoML's request timeout end with the request, answered or not.

    ``TimeoutMiddleware`` (bentoml 1.4.39) schedules ``loop.call_later(timeout, ...)``
    for every request and never cancels it; the timer handle keeps the request's
    context (the request, its scope and everything they reach, ~16 KB) alive for the
    whole timeout, 900 s here: memory grew by ~16 MB per 1000 requests until then.
    It also waits for the first message the app *sends*: an app that returns without
    sending (a client that abandoned its upload: there is nobody to answer) left the
    request "in flight" for the whole timeout, and ``SIGTERM`` waited for it, so the
    service could not be stopped for 15 minutes after one abandoned upload. This
    replaces its ``__call__`` with the same logic plus ``handle.cancel()``, and the wait
    also ends when the app does.
    """
    import asyncio

    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from starlette.responses import JSONResponse

    async def call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)

        def app_ended(_: Any) -> None:  # returned (or raised) without a message
            if not waiter.done():
                waiter.set_result(None)

        fut.add_done_callback(app_ended)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                resp = JSONResponse({"error": f"Not able to process the request in "
                                              f"{self.timeout} seconds"}, status_code=504)
                await resp(scope, receive, send)
        else:
            await fut
        finally:
            timer.cancel()
        return None

    TimeoutMiddleware.__call__ = call  # type: ignore[method-assign]


def bound_cork_wait() -> None:
    """Make the batching queue learn how long it corked, not how long requests queued.

    BentoML's ``CorkDispatcher`` (``_internal/marshal/dispatcher.py``) holds a lone
    request back to form a batch for up to ~0.95 x the *mean logged wait* of the last
    50 batches, and logs as wait ``dispatch time - enqueue time of the batch's first
    request``. Under overload that is mostly time spent queued behind the running batch
    (it runs one batch at a time), so the learned wait grew with the backlog; afterwards
    even a lone request was held for that long and logged it back in: single-client
    latency stayed at 6x its baseline after an overload.

    Here the time the first request spent queued while the previous batch still ran is
    subtracted (what is left is the time the dispatcher chose to wait), and a wait that
    gathered no second request is logged as none, so a lone client stops being held
    once the last 50 batches show it. The rest is bounded by the fixed cost of a batch
    (the intercept ``o_b`` of BentoML's own fit ``duration = o_a * n + o_b``): merging
    two batches saves one fixed cost, so waiting longer than that to merge them never
    raises throughput. On a CPU, where a batch costs about the same per tile at any
    size, this makes batching greedy: whatever queued while a batch ran goes next.
    """
    import time

    from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer

    if getattr(Optimizer.log_outbound, "cacaomap_fixed", False):
        return
    log_outbound = Optimizer.log_outbound
    outbound_call = CorkDispatcher.outbound_call

    def logged_cork_time(self: Any, n: int, wait: float, duration: float) -> None:
        corked = wait - getattr(self, "cacaomap_queued", 0.0) if n > 1 else 0.0
        worth = min(corked, duration, self.o_b)
        log_outbound(self, n=n, wait=max(0.0, worth), duration=duration)

    async def timed_outbound_call(self: Any, inputs_info: Any, training: bool = False
                                  ) -> None:
        opt = self.optimizer
        free_since = getattr(opt, "cacaomap_free_since", 0.0)
        opt.cacaomap_queued = max(0.0, free_since - inputs_info[0].enqueue_time)
        try:
            await outbound_call(self, inputs_info, training)
        finally:
            opt.cacaomap_free_since = time.time()

    logged_cork_time.cacaomap_fixed = True  # type: ignore[attr-defined]
    Optimizer.log_outbound = logged_cork_time  # type: ignore[method-assign]
    CorkDispatcher.outbound_call = timed_outbound_call  # type: ignore[method-assign]


def fast_json_responses() -> None:
    """Encode JSON responses with pydantic-core instead of the stdlib ``json``.

    ``IORootModel.model_dump_json`` (``_bentoml_sdk/io_models.py``) returns
    ``json.dumps(self.model_dump(mode="json"))``: for one 256-px tile of class codes
    that is 65,536 integers and ~22 ms on the event loop, a fifth of a single-tile
    request. ``pydantic_core.to_json`` writes the same JSON (compact separators) in
    ~4 ms; a NaN or infinity becomes ``null`` instead of the invalid ``NaN``.
    """
    import pydantic_core
    from _bentoml_sdk.io_models import IORootModel

    if getattr(IORootModel.model_dump_json, "cacaomap_fixed", False):
        return

    def model_dump_json(self: Any, **kwargs: Any) -> str:
        return pydantic_core.to_json(self.model_dump(mode="json", **kwargs)).decode()

    model_dump_json.cacaomap_fixed = True  # type: ignore[attr-defined]
    IORootModel.model_dump_json = model_dump_json  # type: ignore[method-assign]


def reject_bad_root_json() -> None:
    """Answer 400, not 500, when a root-input API gets a body that is not JSON.

    ``IORootModel.model_validate_json`` (``_bentoml_sdk/io_models.py``) parses with
    ``json.loads`` and lets its ``JSONDecodeError`` escape; BentoML's endpoint turns
    pydantic's ``ValidationError`` into 400 but anything else into 500 with a traceback.
    The replacement parses the same way and raises ``BadInput`` (400) naming the error;
    large bodies are parsed by :func:`serving.json_bodies.loads`, which lets the event
    loop run meanwhile (``json.loads`` holds the interpreter lock throughout).
    """
    import json

    from _bentoml_sdk.io_models import IORootModel
    from bentoml.exceptions import BadInput

    from serving import json_bodies

    current = IORootModel.model_validate_json.__func__  # type: ignore[attr-defined]
    if getattr(current, "cacaomap_fixed", False):
        return

    def model_validate_json(cls: Any, json_data: str | bytes | bytearray, **kwargs: Any
                            ) -> Any:
        if cls.model_json_schema().get("type") in ("string", "file"):
            return cls.model_validate(json_data, **kwargs)
        try:
            parsed = json_bodies.loads(json_data)  # other threads run meanwhile
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadInput(f"the body is not JSON: {err}") from err
        except RecursionError as err:
            raise BadInput("the body is JSON nested too deeply") from err
        return cls.model_validate(parsed, **kwargs)

    model_validate_json.cacaomap_fixed = True  # type: ignore[attr-defined]
    IORootModel.model_validate_json = classmethod(model_validate_json)  # type: ignore[assignment,method-assign]


def parse_json_off_the_loop() -> None:
    """Parse JSON request bodies in a thread, not on the event loop.

    ``JSONSerde.parse_request`` (``_bentoml_impl/serde.py``) reads the body, then
    parses and validates it on the event loop: a large JSON body stalls every other
    request of the worker, ``/livez`` included, for as long as it parses. The
    replacement reads the body the same way and runs the same parse
    (``deserialize_model``) in a worker thread. Bodies of multipart-field models (a URL
    given for a file) keep BentoML's own path.
    """
    import anyio
    from _bentoml_impl.serde import JSONSerde, Payload
    from _bentoml_sdk.io_models import IORootModel

    original = JSONSerde.parse_request
    if getattr(original, "cacaomap_fixed", False):
        return

    async def parse_request(self: Any, request: Any, cls: Any) -> Any:
        if issubclass(cls, IORootModel) and cls.multipart_fields:
            return await original(self, request, cls)
        body = await request.body()
        payload = Payload((body,), metadata=request.headers)
        return await anyio.to_thread.run_sync(self.deserialize_model, payload, cls)

    parse_request.cacaomap_fixed = True  # type: ignore[attr-defined]
    JSONSerde.parse_request = parse_request  # type: ignore[method-assign]


def client_error_status(exc: BaseException | None) -> int | None:
    """The 4xx status BentoML answers an exception with, or None for a fault (5xx)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, BentoMLException):
        status = int(exc.error_code.value)
        return status if 400 <= status < 500 else None
    return None


def quiet_client_errors() -> None:
    """Log a client's error (4xx) as one warning line; keep the traceback for 5xx.

    ``ServiceAppFactory.api_endpoint_wrapper`` (``_bentoml_impl/server/app.py``) calls
    ``log_exception(request)`` for every exception it answers, which logs at error
    level with the traceback (``bentoml/_internal/server/http_app.py``), a wrong tile
    shape or a missing form field included. The replacement looks at the exception
    being handled: a validation error or a BentoML exception with a 4xx code becomes
    ``client error <status> on <method> <path>: <message>`` at warning level, one line;
    anything else is logged as before, traceback and all.
    """
    import logging
    import sys

    import _bentoml_impl.server.app as app

    upstream = app.log_exception
    if getattr(upstream, "cacaomap_fixed", False):
        return
    log = logging.getLogger("cacaomap.http")

    def log_exception(request: Any, exc_info: Any = True) -> None:
        exc = sys.exc_info()[1]
        status = client_error_status(exc)
        if status is None:
            upstream(request, exc_info)
            return
        message = " ".join(str(exc).split())[:300]
        log.warning("client error %d on %s %s: %s", status, request.method,
                    request.url.path, message)

    log_exception.cacaomap_fixed = True  # type: ignore[attr-defined]
    app.log_exception = log_exception


def metric_label(path: str) -> str:
    """The ``endpoint`` label of a request path: the route, or one label for the rest."""
    from serving.http.asgi import PUBLIC_PATHS
    from serving.http.body_guards import ROUTE_MEDIA_TYPES

    if path in ROUTE_MEDIA_TYPES or path in PUBLIC_PATHS:
        return path
    for prefix in ("/ui", "/static_content"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix + "/*"
    return OTHER_PATHS_LABEL


class _Relabelled:
    """A metrics middleware seen with another inner app (the request's own scope)."""

    def __init__(self, middleware: Any, app: Any) -> None:
        self._middleware = middleware
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._middleware, name)


def bound_metric_labels() -> None:
    """Label request metrics by route, with one label for every unknown path.

    ``RunnerTrafficMetricsMiddleware.__call__``
    (``bentoml/_internal/server/http/instruments.py``) uses ``scope["path"]`` as the
    ``endpoint`` label of three metric families, and it is the outermost middleware:
    150 GETs of random 2 KB paths, refused by the host guard, grew ``/metrics`` from
    41 KB to 6.6 MB. Here the middleware sees the label as the path while the app
    inside sees the request unchanged.
    """
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = RunnerTrafficMetricsMiddleware.__call__
    if getattr(original, "cacaomap_fixed", False):
        return

    async def labelled_call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if not str(scope.get("type", "")).startswith("http") or path == "/metrics":
            return await original(self, scope, receive, send)
        label = metric_label(str(path))
        if label == path:
            return await original(self, scope, receive, send)
        inner = self.app

        async def as_sent(_: Scope, receive_: Receive, send_: Send) -> None:
            await inner(scope, receive_, send_)

        await original(_Relabelled(self, as_sent),  # type: ignore[arg-type]
                       {**scope, "path": label}, receive, send)

    labelled_call.cacaomap_fixed = True  # type: ignore[attr-defined]
    RunnerTrafficMetricsMiddleware.__call__ = labelled_call  # type: ignore[method-assign]


#: A result id in a path: a capability (who has it may read the result).
RESULT_ID_IN_PATH = re.compile(r"(/ui/results/)[0-9a-f]{32}")


class RedactResultIds(logging.Filter):
    """Write ``/ui/results/<id>`` in log records: the ids are capability URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the ids of a record's message and arguments; keep the record."""
        if isinstance(record.msg, str):
            record.msg = RESULT_ID_IN_PATH.sub(r"\1<id>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(RESULT_ID_IN_PATH.sub(r"\1<id>", a) if isinstance(a, str)
                                else a for a in record.args)
        return True


def redact_result_ids() -> None:
    """BentoML's access log writes every path at INFO: result ids must not be in it."""
    access = logging.getLogger("bentoml.access")
    if not any(isinstance(f, RedactResultIds) for f in access.filters):
        access.addFilter(RedactResultIds())


def apply() -> None:
    """Apply every fix (idempotent)."""
    redact_result_ids()
    parse_json_off_the_loop()
    harden_multipart()
    cancel_timeout_timers()
    bound_cork_wait()
    fast_json_responses()
    reject_bad_root_json()
    quiet_client_errors()
    bound_metric_labels()
