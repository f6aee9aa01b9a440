"""The package without the repository: a non-editable install into an empty venv.

``pip install .[serve]`` (not editable, no torch) into a fresh virtual environment, run
from a folder outside the checkout: ``cacaomap maps classify`` classifies a scene like the
in-process classifier, ``cacaomap service bento`` builds the Bento from the installed package,
and ``bentoml serve`` of that Bento answers ``/readyz`` and classifies a tile.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio

from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_installed_package_classifies_and_builds_a_serving_bento(
    landscape: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    bin_dir = venv / "bin"
    _run([str(bin_dir / "pip"), "install", "--quiet", "-c",
          str(REPO / "requirements.lock"), f"{REPO}[serve]"], tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Installed as files, not linked to the checkout, and without torch.
    where = _run([str(bin_dir / "python"), "-c", "import serving, sys; "
                  "print(serving.__file__); sys.exit('torch' in sys.modules)"], work)
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout
    no_torch = subprocess.run([str(bin_dir / "python"), "-c", "import torch"], cwd=work,
                              capture_output=True, text=True)
    assert no_torch.returncode != 0

    model = write_local_model(tmp_path / "model" / "v1", tile_size=64, overlap=16)
    scene = landscape / "images" / "s2l2a_20240820.tif"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    _run([str(bin_dir / "cacaomap"), "maps", "classify", str(scene), "--model", str(model),
          "--out", str(work / "classes.tif")], work, env)
    classifier = TileClassifier.from_model_dir(model)
    expected = classify_file(scene, tmp_path / "in_process.tif", classifier)
    with rasterio.open(work / "classes.tif") as got, rasterio.open(expected.path) as ref:
        assert np.array_equal(got.read(1), ref.read(1))

    built = _run([str(bin_dir / "cacaomap"), "service", "bento", "--model", str(model)], work, env)
    assert "built Bento cacaomap:" in built.stdout
    tiles = np.random.default_rng(2).integers(1, 4000, (2, 10, 64, 64)).astype(np.uint16)
    with served_model(None, tmp_path / "bento.log", env, cwd=work,
                      target="cacaomap:latest", python=str(bin_dir / "python")) as url:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        r = httpx.post(f"{url}/classify_tiles", json={"tiles": encode_tiles(tiles)},
                       timeout=120)
        assert r.status_code == 200, r.text
        assert np.array_equal(np.asarray(r.json(), np.uint8), classifier.classify(tiles))
