"""The ``CACAOMAP_*`` variables: one typed object, errors that name the variable."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from serving.settings import LOOPBACK_HOSTS, Settings, SettingsError


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.allowed_hosts == LOOPBACK_HOSTS and settings.api_token == ""
    assert settings.max_upload_bytes == 2048 * 2**20


def test_every_variable_is_read_as_its_type() -> None:
    settings = Settings.from_env({
        "CACAOMAP_MODEL": "bento:cacaomap:abc",
        "CACAOMAP_PROVIDERS": "cuda, CPUExecutionProvider",  # a short name or ORT's
        "CACAOMAP_GPUS": "1",
        "CACAOMAP_DRAIN_S": "12.5",
        "CACAOMAP_TTA": "flips",
        "CACAOMAP_ORT_THREADS": "2",
        "CACAOMAP_MAX_PIXELS": "1_000_000",
        "CACAOMAP_MAX_UPLOAD_MB": "0.5",
        "CACAOMAP_MAX_BATCH_SIZE": "4",
        "CACAOMAP_MAX_LATENCY_MS": "250",
        "CACAOMAP_BATCHING": "off",
        "CACAOMAP_MAX_IN_FLIGHT": "3",
        "CACAOMAP_ALLOWED_HOSTS": "Maps.Example.org,localhost",
        "CACAOMAP_API_TOKEN": "s3cret",
        "CACAOMAP_RESULTS_DIR": "/tmp/results",
        "CACAOMAP_UI_KEEP": "5",
        "CACAOMAP_UI_KEEP_MB": "512",
        "CACAOMAP_MAX_ZONE_VERTICES": "5000",
        "CACAOMAP_BEHIND_PROXY": "on",
        "CACAOMAP_SCENE_ORT_THREADS": "1",
        "CACAOMAP_SCENE_THREADS": "2",
        "CACAOMAP_SCENE_NICE": "19",
        "CACAOMAP_BODY_TIMEOUT_S": "7.5",
        "CACAOMAP_STORE": "/srv/stores/tocache",
        "CACAOMAP_MAX_PLOTS": "500",
        "CACAOMAP_MAX_EVIDENCE": "3",
        "CACAOMAP_PLOT_WORKERS": "4",
        "CACAOMAP_MAX_JSON_MB": "64",
        "CACAOMAP_MODEL_SHA256": "ab" * 32,
        "CACAOMAP_REFERENCE_LAYERS": "radd=/srv/layers/radd",
        "CACAOMAP_REVIEW_RULE": "majority",
        "CACAOMAP_MAX_PLOT_HA": "250",
        "CACAOMAP_PLOT_THREADS": "2",
        "CACAOMAP_MAX_QUEUED_SCENES": "2",
        "CACAOMAP_MAX_QUEUED_PLOTS": "3",
        "CACAOMAP_UI_KEEP_PER_CALLER": "2",
        "UNRELATED": "ignored",
    })
    assert settings == Settings(
        model="bento:cacaomap:abc",
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"), ort_threads=2,
        max_pixels=1_000_000, max_upload_mb=0.5, max_batch_size=4, max_latency_ms=250,
        batching=False, max_in_flight=3, allowed_hosts=("maps.example.org", "localhost"),
        api_token="s3cret", behind_proxy=True, results_dir=Path("/tmp/results"),
        ui_keep=5, ui_keep_mb=512.0, max_zone_vertices=5000, scene_ort_threads=1,
        scene_threads=2, scene_nice=19, body_timeout_s=7.5,
        store=Path("/srv/stores/tocache"), max_plots=500, max_evidence=3, plot_workers=4,
        gpus=1, drain_s=12.5, tta="flips", max_json_mb=64.0, model_sha256="ab" * 32,
        reference_layers="radd=/srv/layers/radd", review_rule="majority", max_plot_ha=250.0,
        plot_threads=2, max_queued_scenes=2, max_queued_plots=3, ui_keep_per_caller=2)
    unset = [f.name for f in fields(Settings)
             if getattr(settings, f.name) == getattr(Settings(), f.name)]
    assert unset == [], f"settings this test does not set: {unset}"
    assert settings.max_upload_bytes == 2**19
    assert "s3cret" not in repr(settings)  # the token never reaches a log line


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("CACAOMAP_MAX_PIXELS", "lots", "CACAOMAP_MAX_PIXELS='lots'"),
    ("CACAOMAP_MAX_PIXELS", "0", "CACAOMAP_MAX_PIXELS must be positive"),
    ("CACAOMAP_MAX_UPLOAD_MB", "nan", "CACAOMAP_MAX_UPLOAD_MB must be positive"),
    ("CACAOMAP_BATCHING", "maybe", "CACAOMAP_BATCHING='maybe': expected on or off"),
    ("CACAOMAP_ORT_THREADS", "-1", "CACAOMAP_ORT_THREADS must be >= 0"),
    ("CACAOMAP_DRAIN_S", "-1", "CACAOMAP_DRAIN_S must be >= 0"),
    ("CACAOMAP_GPUS", "-1", "CACAOMAP_GPUS must be >= 0"),
    ("CACAOMAP_TTA", "rot", "CACAOMAP_TTA must be one of none, flips, d4"),
    ("CACAOMAP_PROVIDERS", "rocm", "unknown execution provider 'rocm'"),
    ("CACAOMAP_UI_KEEP", "-3", "CACAOMAP_UI_KEEP must be positive"),
    ("CACAOMAP_UI_KEEP_MB", "0", "CACAOMAP_UI_KEEP_MB must be positive"),
    ("CACAOMAP_SCENE_NICE", "20", "CACAOMAP_SCENE_NICE must be 0 to 19"),
    ("CACAOMAP_MAX_ZONE_VERTICES", "0", "CACAOMAP_MAX_ZONE_VERTICES must be positive"),
    ("CACAOMAP_BEHIND_PROXY", "on", "BEHIND_PROXY is on.*set CACAOMAP_API_TOKEN"),
    ("CACAOMAP_MAX_PLOTS", "0", "CACAOMAP_MAX_PLOTS must be positive"),
])
def test_a_malformed_value_is_refused_naming_the_variable(name: str, raw: str,
                                                          says: str) -> None:
    with pytest.raises(SettingsError, match=says.replace("(", r"\(")):
        Settings.from_env({name: raw})
