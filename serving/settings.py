"""Every ``CACAOMAP_*`` setting of the serving floor, in one typed object read once.

The service, its guards, the ONNX Runtime session and the model store take their
settings from :func:`current` (the environment, read at first use) or from a
:class:`Settings` given to them (tests, embedding). A malformed value stops the service
with a message naming the variable, never a silent default.

| variable | field | default |
|---|---|---|
| ``CACAOMAP_MODEL`` | ``model`` | newest ``models/cacaomap/v<N>`` |
| ``CACAOMAP_PROVIDERS`` | ``providers`` | TensorRT, CUDA, CPU (those installed); given: required |
| ``CACAOMAP_GPUS`` | ``gpus`` | 0 (the service's BentoML ``resources``) |
| ``CACAOMAP_ORT_THREADS`` | ``ort_threads`` | ONNX Runtime's choice |
| ``CACAOMAP_SCENE_ORT_THREADS`` | ``scene_ort_threads`` | half the cores |
| ``CACAOMAP_MAX_PIXELS`` | ``max_pixels`` | 121,000,000 (a full S2 tile) |
| ``CACAOMAP_MAX_UPLOAD_MB`` | ``max_upload_mb`` | 2048 |
| ``CACAOMAP_MAX_JSON_MB`` | ``max_json_mb`` | 128 (a JSON body is parsed in memory) |
| ``CACAOMAP_MAX_BATCH_SIZE`` | ``max_batch_size`` | 32 |
| ``CACAOMAP_MAX_LATENCY_MS`` | ``max_latency_ms`` | 10000 |
| ``CACAOMAP_BATCHING`` | ``batching`` | on |
| ``CACAOMAP_MAX_IN_FLIGHT`` | ``max_in_flight`` | 64 |
| ``CACAOMAP_SCENE_THREADS`` | ``scene_threads`` | 1 |
| ``CACAOMAP_SCENE_NICE`` | ``scene_nice`` | 10 |
| ``CACAOMAP_BODY_TIMEOUT_S`` | ``body_timeout_s`` | 30 |
| ``CACAOMAP_ALLOWED_HOSTS`` | ``allowed_hosts`` | loopback names |
| ``CACAOMAP_API_TOKEN`` | ``api_token`` | none (loopback only) |
| ``CACAOMAP_BEHIND_PROXY`` | ``behind_proxy`` | off (on: a token is required) |
| ``CACAOMAP_RESULTS_DIR`` | ``results_dir`` | ``<tmp>/cacaomap-results-<uid>`` |
| ``CACAOMAP_UI_KEEP`` | ``ui_keep`` | 20 |
| ``CACAOMAP_UI_KEEP_MB`` | ``ui_keep_mb`` | 4096 |
| ``CACAOMAP_UI_KEEP_PER_CALLER`` | ``ui_keep_per_caller`` | 5 (per client address) |
| ``CACAOMAP_MAX_ZONE_VERTICES`` | ``max_zone_vertices`` | 1,000,000 |
| ``CACAOMAP_MODEL_SHA256`` | ``model_sha256`` | none (a model of another sha256 is refused) |
| ``CACAOMAP_STORE`` | ``store`` | none (``/plots`` answers 404) |
| ``CACAOMAP_REFERENCE_LAYERS`` | ``reference_layers`` | none (``spec=path;spec=path``) |
| ``CACAOMAP_REVIEW_RULE`` | ``review_rule`` | any (``majority``, ``off``) |
| ``CACAOMAP_MAX_PLOTS`` | ``max_plots`` | 10,000 |
| ``CACAOMAP_MAX_PLOT_HA`` | ``max_plot_ha`` | 1,000 (a larger plot is its own error) |
| ``CACAOMAP_MAX_EVIDENCE`` | ``max_evidence`` | 20 |
| ``CACAOMAP_PLOT_WORKERS`` | ``plot_workers`` | 2 |
| ``CACAOMAP_PLOT_THREADS`` | ``plot_threads`` | 1 (``/plots`` at once, apart from scenes) |
| ``CACAOMAP_MAX_QUEUED_SCENES`` | ``max_queued_scenes`` | 16 (more: 503 + ``Retry-After``) |
| ``CACAOMAP_MAX_QUEUED_PLOTS`` | ``max_queued_plots`` | 8 (more: 503 + ``Retry-After``) |
| ``CACAOMAP_DRAIN_S`` | ``drain_s`` | 30 (0: stop at once) |
| ``CACAOMAP_TTA`` | ``tta`` | none (``flips``: 4 runs a tile, ``d4``: 8) |
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Default largest scene accepted, in pixels (a full Sentinel-2 tile is 120.6 Mpx).
DEFAULT_MAX_PIXELS = 11_000 * 11_000
#: Host names a loopback service answers to by default.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PREFIX = "CACAOMAP_"
#: Test-time augmentation modes (:data:`serving.inference.tta.TTA`).
TTA_MODES = ("none", "flips", "d4")


class SettingsError(ValueError):
    """A ``CACAOMAP_*`` variable whose value cannot be used."""


def _names(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """The serving floor's settings (see the module docstring for the variables).

    Attributes:
        model: Model reference: a model folder, ``models/<name>``, or
            ``bento:<name>[:<version>]``; empty: the newest ``models/cacaomap/v<N>``.
        providers: ONNX Runtime providers in preference order (``cuda``, ``tensorrt``,
            ``cpu`` or ONNX Runtime's names). Empty: the best installed, falling back
            to the CPU. Given: the first is *required*: the service refuses to start
            when it cannot be used (no silent CPU fallback when a GPU was asked for).
        gpus: GPUs the service asks BentoML for (``resources={"gpu": n}``); the GPU
            Bento sets 1.
        ort_threads: Intra-op threads per session (0: ONNX Runtime's choice).
        scene_ort_threads: Intra-op threads of the service's scene session (0: half
            the cores), so that tile requests keep cores while a scene runs.
        max_pixels: Largest scene (or class map) accepted, in pixels.
        max_upload_mb: Largest request body, in MiB.
        max_json_mb: Largest JSON body, in MiB (parsed whole in memory, unlike files).
        max_batch_size: Adaptive batching: most tiles requests in one batch.
        max_latency_ms: Adaptive batching: a request queued longer gets 503.
        batching: Adaptive batching of ``/classify_tiles`` on or off.
        max_in_flight: API requests in flight per worker before 503.
        scene_threads: Scene-sized requests (scenes, baselines, the map page) run at
            once per worker, in threads of their own (tile requests never wait on them).
        scene_nice: Nice value of the scene threads (0-19): higher lets tile requests
            preempt a running scene sooner, and makes the scene slower under tile load.
        body_timeout_s: Longest wait between two chunks of a request body before 408.
        allowed_hosts: ``Host`` header names answered (``*``: any).
        api_token: Bearer token required on API routes (empty: loopback only).
        behind_proxy: The service sits behind a reverse proxy or TLS sidecar on the
            same host, so every caller looks like loopback: a token is then required.
        results_dir: Where the map page keeps result folders (None: under the temp dir).
        ui_keep: Result folders of the map page kept.
        ui_keep_mb: MiB of result folders of the map page kept.
        ui_keep_per_caller: Result folders kept per caller (client address): a
            caller's new result evicts its own oldest, never another caller's while
            that one holds fewer.
        max_zone_vertices: Most vertices over all zones of one request.
        model_sha256: The sha256 the served model's ONNX file must have (pinned: any
            other model is refused at start with one line).
        store: The baseline store ``/plots`` checks plots against (None: no store).
        reference_layers: Reference layers ``/plots`` reads beside the store (or alone):
            ``spec=path`` pairs separated by ``;`` (:mod:`serving.references`).
        review_rule: When the model and the layers disagree enough for ``needs_review``.
        max_plots: Most plots in one ``/plots`` request (the EU system's 10,000).
        max_plot_ha: The largest plot checked, in hectares: a larger one (or a point
            declaring more) is that plot's error, before any work on it.
        max_evidence: Most plots of a ``/plots`` request with ``evidence=true``.
        plot_workers: Chunks of plots measured at once per request.
        plot_threads: ``/plots`` requests checked at once (threads apart from scenes').
        max_queued_scenes: Scene requests queued or running at once; more get 503 (16
            full Sentinel-2 tiles, ~41 s each on 2 cores, finish within the 900 s
            timeout: what waits longer would time out anyway).
        max_queued_plots: ``/plots`` requests queued or running at once; more get 503.
        drain_s: On ``SIGTERM``, longest wait for requests in flight to finish while
            new ones are refused (503); 0 stops at once.
        tta: Test-time augmentation of every classification (tiles, scenes, plots'
            class maps): ``none``, ``flips`` or ``d4`` (:mod:`serving.inference.tta`).
    """

    model: str = ""
    providers: tuple[str, ...] = ()
    gpus: int = 0
    ort_threads: int = 0
    scene_ort_threads: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_mb: float = 2048.0
    max_json_mb: float = 128.0
    max_batch_size: int = 32
    max_latency_ms: int = 10_000
    batching: bool = True
    max_in_flight: int = 64
    scene_threads: int = 1
    scene_nice: int = 10
    body_timeout_s: float = 30.0
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    api_token: str = field(default="", repr=False)
    behind_proxy: bool = False
    results_dir: Path | None = None
    ui_keep: int = 20
    ui_keep_mb: float = 4096.0
    ui_keep_per_caller: int = 5
    max_zone_vertices: int = 1_000_000
    model_sha256: str = ""
    store: Path | None = None
    reference_layers: str = ""
    review_rule: str = "any"
    max_plots: int = 10_000
    max_plot_ha: float = 1_000.0
    max_evidence: int = 20
    plot_workers: int = 2
    plot_threads: int = 1
    max_queued_scenes: int = 16
    max_queued_plots: int = 8
    drain_s: float = 30.0
    tta: str = "none"

    @property
    def max_upload_bytes(self) -> int:
        """The request body limit in bytes."""
        return int(self.max_upload_mb * 2**20)

    @property
    def max_json_bytes(self) -> int:
        """The limit of a JSON body in bytes (parsed whole in memory)."""
        return int(self.max_json_mb * 2**20)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``CACAOMAP_*`` variables of ``env`` (default: ``os.environ``).

        Raises:
            SettingsError: Naming the variable whose value is malformed.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _parse(f.name, raw)
            except ValueError as err:
                raise SettingsError(f"{name}={raw!r}: {err}") from err
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values out of range.

        Raises:
            SettingsError: Naming the setting.
        """
        positive = {"max_pixels": self.max_pixels, "max_upload_mb": self.max_upload_mb,
                    "max_json_mb": self.max_json_mb,
                    "max_batch_size": self.max_batch_size,
                    "max_latency_ms": self.max_latency_ms,
                    "max_in_flight": self.max_in_flight, "ui_keep": self.ui_keep,
                    "ui_keep_mb": self.ui_keep_mb,
                    "ui_keep_per_caller": self.ui_keep_per_caller,
                    "max_zone_vertices": self.max_zone_vertices,
                    "body_timeout_s": self.body_timeout_s,
                    "scene_threads": self.scene_threads, "max_plots": self.max_plots,
                    "max_plot_ha": self.max_plot_ha,
                    "max_evidence": self.max_evidence, "plot_workers": self.plot_workers,
                    "plot_threads": self.plot_threads,
                    "max_queued_scenes": self.max_queued_scenes,
                    "max_queued_plots": self.max_queued_plots}
        for name, value in positive.items():
            if not value > 0:  # NaN too
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive; got {value}")
        if not 0 <= self.scene_nice <= 19:
            raise SettingsError(f"{PREFIX}SCENE_NICE must be 0 to 19; got {self.scene_nice}")
        if self.behind_proxy and not self.api_token:
            raise SettingsError(f"{PREFIX}BEHIND_PROXY is on: every caller reaches the "
                                f"service through the proxy, so set {PREFIX}API_TOKEN")
        if not self.drain_s >= 0:
            raise SettingsError(f"{PREFIX}DRAIN_S must be >= 0; got {self.drain_s}")
        if self.tta not in TTA_MODES:
            raise SettingsError(f"{PREFIX}TTA must be one of {', '.join(TTA_MODES)}; "
                                f"got {self.tta!r}")
        if self.model_sha256 and not (len(self.model_sha256) == 64 and all(
                ch in "0123456789abcdef" for ch in self.model_sha256.lower())):
            raise SettingsError(f"{PREFIX}MODEL_SHA256 must be a sha256 (64 hex digits); "
                                f"got {self.model_sha256!r}")
        if self.review_rule not in ("any", "majority", "off"):
            raise SettingsError(f"{PREFIX}REVIEW_RULE must be any, majority or off; got "
                                f"{self.review_rule!r}")
        if self.gpus < 0:
            raise SettingsError(f"{PREFIX}GPUS must be >= 0; got {self.gpus}")
        for name, threads in (("ORT_THREADS", self.ort_threads),
                              ("SCENE_ORT_THREADS", self.scene_ort_threads)):
            if threads < 0:
                raise SettingsError(f"{PREFIX}{name} must be >= 0; got {threads}")


def _parse(name: str, raw: str) -> object:
    """One variable's value as its field's type."""
    kind = _FIELD_TYPES[name]
    if name == "providers":
        return tuple(provider_name(p) for p in _names(raw))
    if name == "allowed_hosts":
        return tuple(h.lower() for h in _names(raw))
    if kind.startswith("tuple"):
        return _names(raw)
    if kind == "bool":
        if raw.lower() not in ("on", "off", "true", "false", "1", "0"):
            raise ValueError("expected on or off")
        return raw.lower() in ("on", "true", "1")
    if kind == "float":
        return float(raw)
    if kind == "int":
        return int(raw.replace("_", ""))
    if kind.startswith("Path"):
        return Path(raw)
    return raw


#: Short names of ONNX Runtime's execution providers.
PROVIDER_ALIASES = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                    "trt": "TensorrtExecutionProvider", "cpu": "CPUExecutionProvider"}


def provider_name(name: str) -> str:
    """ONNX Runtime's name of a provider given by its short name (or its own name)."""
    if name.lower() in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[name.lower()]
    if name in PROVIDER_ALIASES.values():
        return name
    raise ValueError(f"unknown execution provider {name!r}; use "
                     f"{', '.join(sorted(set(PROVIDER_ALIASES)))} or ONNX Runtime's names")


#: Each setting's declared type, as written in :class:`Settings`.
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(Settings)}


@functools.cache
def current() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings.from_env()
