"""BentoML's own clients against a real ``bentoml serve``: numpy tiles, scenes, retries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import bentoml
import numpy as np
import pytest
import rasterio
from bentoml.exceptions import BentoMLException
from rasterio.transform import from_origin

from serving.client import AsyncCacaoMapClient, CacaoMapClient
from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles
from serving.inference.tiles import TileClassifier
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

pytestmark = [pytest.mark.server, pytest.mark.slow]
#: One request in flight at a time: concurrent callers are refused with 503.
IN_FLIGHT = 1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("client") / "v1", tile_size=64)


@pytest.fixture(scope="module")
def url(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("bentoml")
    env = {"BENTOML_HOME": str(home), "CACAOMAP_MAX_IN_FLIGHT": str(IN_FLIGHT)}
    with served_model(model_dir, home / "serve.log", env, cwd=REPO) as served:
        yield served


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    return np.random.default_rng(3).integers(1, 4000, (3, 10, 64, 64)).astype(np.uint16)


def test_bentoml_client_sends_numpy_tiles_and_gets_codes_back(
        url: str, model_dir: Path, tiles: np.ndarray) -> None:
    expected = TileClassifier.from_model_dir(model_dir).classify(tiles)
    with bentoml.SyncHTTPClient(url, timeout=60) as client:
        as_lists = client.classify_tiles(tiles=tiles)
        as_binary = client.classify_tiles(tiles=encode_tiles(tiles))
    for got in (as_lists, as_binary):
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8
        assert np.array_equal(got, expected)


def test_cacaomap_client_sends_arrays_in_binary(url: str, model_dir: Path,
                                                tiles: np.ndarray) -> None:
    expected = TileClassifier.from_model_dir(model_dir).classify(tiles)
    sizes: list[int] = []
    with CacaoMapClient(url) as client:
        client.client.event_hooks["request"].append(lambda r: sizes.append(len(r.content)))
        got = client.classify_tiles(tiles=tiles)
    assert np.array_equal(got, expected) and got.dtype == np.uint8
    binary = len(f'{{"tiles": {encode_tiles(tiles)}}}')  # ~4/3 of the array's bytes
    assert sizes == [pytest.approx(binary, rel=0.01)]

    async def call() -> np.ndarray:
        async with AsyncCacaoMapClient(url) as client:
            return await client.classify_tiles(tiles=tiles)

    assert np.array_equal(asyncio.run(call()), expected)


def test_scenes_through_the_client(url: str, tmp_path: Path) -> None:
    scene = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(100, 4000, (10, 200, 300), dtype=np.uint16)
    with rasterio.open(scene, "w", driver="GTiff", width=300, height=200, count=10,
                       dtype="uint16", crs="EPSG:32718",
                       transform=from_origin(500_000, 9_000_000, 10, 10)) as dst:
        dst.write(data)
    with CacaoMapClient(url) as client:
        summary = client.classify_scene_summary(scene=scene)
        class_map = client.classify_scene(scene=scene)
    assert (summary["width"], summary["height"]) == (300, 200)
    assert sum(summary["class_pixels"].values()) == 300 * 200
    with rasterio.open(class_map) as src:
        assert (src.width, src.height, src.dtypes[0]) == (300, 200, "uint8")


def _callers(url: str, make: type[bentoml.SyncHTTPClient], tiles: np.ndarray,
             n: int = 6) -> list[str]:
    """``n`` callers at once, 3 requests each; what each request ended with."""
    outcomes: list[str] = []
    barrier = threading.Barrier(n)

    def caller() -> None:
        with make(url) as client:
            barrier.wait()
            for _ in range(3):
                try:
                    client.classify_tiles(tiles=tiles)
                    outcomes.append("200")
                except BentoMLException as err:
                    outcomes.append(f"{type(err).__name__}: {err}"[:80])

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return outcomes


def test_refusals_are_retried_after_retry_after(url: str, tiles: np.ndarray) -> None:
    big = np.repeat(tiles, 8, axis=0)  # 24 tiles: a request that takes a while
    plain = _callers(url, bentoml.SyncHTTPClient, big)
    # refused (503: the in-flight limit, BentoML's queue, or the spool limit)
    assert any("503" in o or "overloaded" in o or "ServiceUnavailable" in o
               for o in plain), plain
    retried = _callers(url, CacaoMapClient, big)
    assert retried == ["200"] * len(retried), retried
