"""``SIGTERM`` stops a real ``bentoml serve`` promptly, also after an abandoned upload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.http.local_server import free_port
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.server]
#: Seconds a stop may take (BentoML's own shutdown is under 2 s here).
STOP_WITHIN_S = 15


def serve(model: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``bentoml serve`` of the service on a free port, once ``/readyz`` answers."""
    port = free_port()
    env = os.environ | {"CACAOMAP_MODEL": str(model), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve",
                             "serving.http.service:CacaoMap", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("bentoml serve was not ready")


def seconds_to_stop(proc: subprocess.Popen[bytes]) -> float:
    """Send SIGTERM and time the exit (killed, and a failure, past the limit)."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - start


@pytest.mark.parametrize("before", ["idle", "abandoned upload"])
def test_sigterm_stops_the_service(before: str, tmp_path: Path) -> None:
    model = write_local_model(tmp_path / "v1", tile_size=64, overlap=16)
    proc, port = serve(model, tmp_path / "serve.log")
    if before == "abandoned upload":
        # Headers for a large body, one byte of it, then the client goes away.
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /classify_tiles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000000"
                           b"\r\n\r\n{")
            time.sleep(0.5)
        time.sleep(0.5)
    took = seconds_to_stop(proc)
    assert took < STOP_WITHIN_S, f"still running {STOP_WITHIN_S} s after SIGTERM ({before})"
    assert proc.returncode == 0
