"""A ``bentoml serve`` process of this service on 127.0.0.1, started and stopped.

Used by ``make demo``, the benchmarks and the tests that need a real process (overload,
soak, faults, schemathesis, the browser): :func:`served_model` starts the server for a
model folder, waits until ``/readyz`` answers, yields its URL and stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

#: The service's import path for ``bentoml serve``.
SERVICE = "serving.http.service:CacaoMap"
#: Seconds a server may take to answer ``/readyz``.
READY_TIMEOUT_S = 180


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerURL(str):
    """The base URL of a running server, with the server's process id."""

    pid: int


@contextmanager
def served_model(
    model_dir: Path | None, log_path: Path | None = None,
    extra_env: dict[str, str] | None = None, cwd: Path | None = None,
    target: str = SERVICE, python: str = sys.executable,
    memory_limit_mb: int | None = None,
) -> Iterator[ServerURL]:
    """Run ``bentoml serve`` for ``model_dir`` on 127.0.0.1 until the block exits.

    Yields the base URL (with the server's ``pid``) once ``/readyz`` answers 200; stops
    the server afterwards.

    Args:
        model_dir: The model folder (``CACAOMAP_MODEL``); None: the service's default.
        log_path: Where the server's output goes (None: discarded).
        extra_env: Variables added to the server's environment.
        cwd: The server's working directory.
        target: What ``bentoml serve`` serves: the service (default) or a Bento tag.
        python: The interpreter whose BentoML runs it (another virtual environment).
        memory_limit_mb: Address-space limit of the server and its workers (Linux
            ``RLIMIT_AS``): an allocation past it fails with MemoryError instead of
            swapping or waking the OOM killer. None: no limit.

    Raises:
        RuntimeError: If the server exits or is not ready in time (with its log tail).
    """
    url = ServerURL(f"http://127.0.0.1:{free_port()}")
    env = os.environ | {"BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    if model_dir is not None:
        env["CACAOMAP_MODEL"] = str(model_dir)
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [python, "-m", "bentoml", "serve", target,
         "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
        env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=None if memory_limit_mb is None else _address_space_limit(memory_limit_mb),
    )
    url.pid = proc.pid

    def tail() -> str:
        return log_path.read_text()[-3000:] if log_path else ""

    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode}\n{tail()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready in {READY_TIMEOUT_S} s\n{tail()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()  # type: ignore[union-attr]


def _address_space_limit(megabytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping the child's address space (inherited by its workers)."""
    import resource

    def cap() -> None:
        limit = megabytes * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap
