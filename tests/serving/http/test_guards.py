"""The guards in front of the service: token, loopback rule, hosts; refusing bad models."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.http.access_guards import HostGuard, TokenGuard
from serving.http.asgi import Message, Scope
from serving.http.local_server import free_port
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("guards") / "v1")


async def _call(app: TokenGuard | HostGuard, scope: Scope) -> tuple[int, str]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), body.decode()


async def _inner(scope: Scope, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"inner"})  # type: ignore[operator]


def _scope(path: str, server: str, host: str = "127.0.0.1:3000",
           auth: str | None = None) -> Scope:
    headers = [(b"host", host.encode())]
    if auth:
        headers.append((b"authorization", auth.encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers,
            "server": (server, 3000)}


def test_without_a_token_only_loopback_is_served() -> None:
    guard = TokenGuard(_inner, token="")
    assert asyncio.run(_call(guard, _scope("/classify_tiles", "127.0.0.1")))[0] == 200
    assert asyncio.run(_call(guard, _scope("/classify_tiles", "::1")))[0] == 200
    status, body = asyncio.run(_call(guard, _scope("/classify_tiles", "10.1.2.3")))
    assert status == 403 and "CACAOMAP_API_TOKEN" in body and "10.1.2.3" in body
    assert asyncio.run(_call(guard, _scope("/livez", "10.1.2.3")))[0] == 200
    with_token = TokenGuard(_inner, token=TOKEN)
    assert asyncio.run(_call(with_token, _scope("/baseline", "10.1.2.3",
                                                auth=f"Bearer {TOKEN}")))[0] == 200
    assert asyncio.run(_call(with_token, _scope("/baseline", "10.1.2.3")))[0] == 401


def test_allowed_hosts() -> None:
    default = HostGuard(_inner)
    assert asyncio.run(_call(default, _scope("/model", "127.0.0.1", "localhost:3000")))[0] \
        == 200
    assert asyncio.run(_call(default, _scope("/model", "127.0.0.1", "[::1]:3000")))[0] == 200
    status, body = asyncio.run(_call(default, _scope("/model", "127.0.0.1",
                                                     "attacker.example")))
    assert status == 400 and "attacker.example" in body
    named = HostGuard(_inner, allowed=("cacaomap.internal",))
    assert asyncio.run(_call(named, _scope("/model", "10.0.0.2",
                                           "cacaomap.internal:3000")))[0] == 200
    assert asyncio.run(_call(named, _scope("/model", "10.0.0.2", "localhost")))[0] == 400


def _serve_exit(model: Path, tmp_path: Path, extra_env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CACAOMAP_MODEL": str(model), "BENTOML_HOME": str(tmp_path / "h"),
                        "BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "serving.http.service:CacaoMap", "--host",
         "127.0.0.1", "--port", str(free_port())], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=180)


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "corrupt onnx", "contract edited",
                                    "no contract", "not the pinned one"])
def test_service_refuses_to_start_on_a_bad_model(
    damage: str, model_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "v1"
    shutil.copytree(model_dir, model)
    if damage == "missing":
        shutil.rmtree(model)
        needle = "does not exist"
    elif damage == "corrupt onnx":
        data = bytearray((model / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (model / "model.onnx").write_bytes(bytes(data))
        needle = "does not match the contract"
    elif damage == "contract edited":
        contract = json.loads((model / "contract.json").read_text())
        contract["bands"] = contract["bands"][::-1]
        (model / "contract.json").write_text(json.dumps(contract))
        needle = "disagree on ['bands']"
    elif damage == "no contract":
        (model / "contract.json").unlink()
        needle = "has no contract.json"
    else:  # a whole, consistent model, but not the one this deployment pins
        needle = "not the pinned CACAOMAP_MODEL_SHA256 aaaaaaaaaaaa"
    env = {"CACAOMAP_MODEL_SHA256": "a" * 64} if damage == "not the pinned one" else None
    proc = _serve_exit(model, tmp_path, env)
    assert proc.returncode != 0
    assert "cacaomap: cannot serve: " in proc.stderr and needle in proc.stderr, \
        proc.stderr[-2000:]


@pytest.mark.server
@pytest.mark.slow
def test_service_refuses_to_start_without_the_required_provider(
    model_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the refusal is for machines without it")
    proc = _serve_exit(model_dir, tmp_path, {"CACAOMAP_PROVIDERS": "cuda"})
    assert proc.returncode != 0
    line = next((x for x in proc.stderr.splitlines() if "cannot serve" in x), "")
    assert "CACAOMAP_PROVIDERS asks for CUDAExecutionProvider" in line, proc.stderr[-2000:]
    assert "install the gpu extra" in line and "Traceback" not in proc.stderr
