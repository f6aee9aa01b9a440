"""Property-based API testing: schemathesis generates requests from ``/docs.json``.

At least 1000 generated cases against a real `bentoml serve`: no 5xx, every response
conforms to the published schema (status codes, content types, bodies).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.http.local_server import ServerURL, served_model
from tests.model_factory import write_local_model
from tests.service_helpers import ARTIFACTS, REPO

pytestmark = [pytest.mark.server, pytest.mark.slow]
MIN_CASES = 1000
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    work = tmp_path_factory.mktemp("st")
    # 8-px tiles: hypothesis builds every generated tile as nested lists, slowly.
    model = write_local_model(work / "v1", tile_size=8, overlap=2)
    with served_model(model, work / "serve.log", {"BENTOML_HOME": str(work / "home")},
                      cwd=REPO) as url:
        yield url


def _run(server: str, workdir: Path, name: str, *selection: str) -> tuple[int, str]:
    """Run schemathesis on part of the API; (cases generated, summary text)."""
    st = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [str(st), "run", f"{server}/docs.json", "--seed", "7", "--checks", CHECKS,
         "--report", "junit", "--report-junit-path", str(ARTIFACTS / f"schemathesis-{name}.xml"),
         "--no-color", *selection],
        capture_output=True, text=True, timeout=1200, cwd=workdir)
    summary = proc.stdout[proc.stdout.rfind("SUMMARY"):]
    generated = re.search(r"(\d+) generated", summary)
    assert generated, proc.stdout[-3000:]
    assert proc.returncode == 0, proc.stdout[-6000:]
    return int(generated.group(1)), summary


def test_generated_requests_never_break_the_service(
    server: ServerURL, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # Tile arrays are slow for hypothesis to build: fewer examples for that operation.
    files, files_summary = _run(server, tmp_path, "files", "--max-examples", "300",
                                "--exclude-path", "/classify_tiles")
    tiles, tiles_summary = _run(server, tmp_path, "tiles", "--max-examples", "60",
                                "--include-path", "/classify_tiles")
    with capsys.disabled():
        print(f"\n{files_summary}\n{tiles_summary}\nschemathesis: {files + tiles} cases, "
              "0 failures")
    assert files + tiles >= MIN_CASES
