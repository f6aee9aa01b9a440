"""A real STAC API for the tests: stac-fastapi-pgstac on PostgreSQL/PostGIS, on loopback.

``make test`` installs PostgreSQL and PostGIS from Debian's packages and the server
(``tests/stac_api_requirements.txt``) into ``.venv-stac``; where they are missing the
tests that need them are skipped, saying so. The session fixture :func:`stac_api`
creates a throw-away cluster (``initdb``; as ``postgres`` when run as root, since
PostgreSQL refuses to run as root), migrates the pgstac schema (``pypgstac migrate``),
makes ``eo:cloud_cover`` a numeric queryable and turns on ``context`` (counts), starts
``uvicorn stac_fastapi.pgstac.app:create_app --factory`` on 127.0.0.1 and stops both afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.http.local_server import free_port
from tests.service_helpers import REPO

#: The server's own virtual environment (``make test`` makes it).
STAC_VENV = REPO / ".venv-stac"
#: Items per page the server answers with unless asked (stac-fastapi's default).
PAGE_SIZE = 10


def _pg_bin() -> Path | None:
    """The newest PostgreSQL's bin folder that has PostGIS beside it."""
    for bin_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        version = bin_dir.parent.name
        if (bin_dir / "initdb").is_file() and Path(
                f"/usr/share/postgresql/{version}/extension/postgis.control").is_file():
            return bin_dir
    return None


def missing() -> str | None:
    """Why the STAC API cannot run here (None: it can)."""
    if _pg_bin() is None:
        return "PostgreSQL with PostGIS is not installed (make test installs them)"
    if not (STAC_VENV / "bin" / "uvicorn").is_file():
        return f"{STAC_VENV} has no stac-fastapi-pgstac (make test installs it)"
    return None


def _as_postgres(args: list[str]) -> list[str]:
    """Run as the ``postgres`` user when root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class StacApi:
    """A running STAC API and its database."""

    url: str
    dsn: str
    work: Path

    def load(self, collection: dict[str, Any], items: list[dict[str, Any]]) -> None:
        """Insert (or replace) a collection and its items with ``pypgstac load``."""
        for kind, rows in (("collections", [collection]), ("items", items)):
            path = self.work / f"{kind}.ndjson"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            _run([str(STAC_VENV / "bin" / "pypgstac"), "load", kind, str(path), "--dsn",
                  self.dsn, "--method", "upsert"])


def _run(args: list[str], timeout: float = 120) -> None:
    """Run a set-up command; a failure shows its output."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"


def _sql(psql: Path, dsn: str, statement: str) -> None:
    _run([str(psql), dsn, "-v", "ON_ERROR_STOP=1", "-c", statement], timeout=60)


@pytest.fixture(scope="session")
def stac_api() -> Iterator[StacApi]:
    """A STAC API on 127.0.0.1 with an empty pgstac (see the module docstring)."""
    why = missing()
    if why:
        pytest.skip(why)
    bin_dir = _pg_bin()
    assert bin_dir is not None
    work = Path(tempfile.mkdtemp(prefix="cacaomap-stac-"))
    data = work / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    port, api_port = free_port(), free_port()
    _run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                       "--auth=trust", "-E", "UTF8"]))
    _run(_as_postgres([
        str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(work / "postgres.log"), "-w",
        "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1", "start"]))
    dsn = f"postgresql://postgres:unused@127.0.0.1:{port}/postgres"
    server = None
    try:
        _run([str(STAC_VENV / "bin" / "pypgstac"), "migrate", "--dsn", dsn], timeout=300)
        psql = bin_dir / "psql"
        _sql(psql, dsn, "INSERT INTO pgstac.pgstac_settings (name, value) VALUES "
                        "('context', 'on') ON CONFLICT (name) DO UPDATE SET value = 'on'")
        _sql(psql, dsn, "SET search_path TO pgstac, public; "
                        "DELETE FROM pgstac.queryables WHERE name = 'eo:cloud_cover'; "
                        "INSERT INTO pgstac.queryables (name, definition, property_wrapper,"
                        " property_index_type) VALUES ('eo:cloud_cover', "
                        "'{\"type\": \"number\"}', 'to_float', 'BTREE')")
        env = os.environ | {"STAC_FASTAPI_TITLE": "cacaomap test STAC API",
                            "STAC_FASTAPI_DESCRIPTION": "pgstac on loopback",
                            "STAC_FASTAPI_LANDING_ID": "cacaomap-test",
                            "PGUSER": "postgres", "PGPASSWORD": "unused",
                            "PGHOST": "127.0.0.1", "PGPORT": str(port),
                            "PGDATABASE": "postgres"}
        log = (work / "api.log").open("w")
        server = subprocess.Popen(
            [str(STAC_VENV / "bin" / "uvicorn"), "stac_fastapi.pgstac.app:create_app",
             "--factory", "--host", "127.0.0.1", "--port", str(api_port)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_mgmt/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (work / "api.log").read_text()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError((work / "api.log").read_text()[-3000:])
        yield StacApi(url=url, dsn=dsn, work=work)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                     "fast", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
