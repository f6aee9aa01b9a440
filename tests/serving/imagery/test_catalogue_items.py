"""Items as the big catalogues publish them: bands, offsets, signed hrefs.

Shaped as Earth Search v1 and Planetary Computer publish their ``sentinel-2-l2a``
items (``tests/data/stac/``), they map to the right bands and offsets; Planetary
Computer's blob hrefs are signed when asked.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pystac
import pytest

from serving.imagery.harmonise import boa_offset
from serving.imagery.sources import ImageryError, asset_key, scl_key, sign_items
from training.synthetic.spectra import S2_BANDS

DATA = Path(__file__).resolve().parents[2] / "data" / "stac"


def _item(name: str) -> pystac.Item:
    return pystac.Item.from_dict(json.loads((DATA / name).read_text()))


def test_earth_search_v1_assets_and_offsets() -> None:
    item = _item("earth_search_v1_sentinel-2-l2a.json")
    keys = {band: asset_key(item, band) for band in S2_BANDS}
    assert keys == {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08",
                    "B11": "swir16", "B12": "swir22"}
    assert scl_key(item) == "scl"
    offsets = [boa_offset(item.properties, item.assets[k].to_dict()) for k in keys.values()]
    assert offsets == pytest.approx([-1000.0] * len(keys))  # -0.1 at scale 0.0001
    item.properties["earthsearch:boa_offset_applied"] = True  # removed by the provider
    assert boa_offset(item.properties, item.assets["red"].to_dict()) == 0.0


def test_planetary_computer_assets_and_offsets() -> None:
    item = _item("planetary_computer_sentinel-2-l2a.json")
    assert {band: asset_key(item, band) for band in S2_BANDS} == {b: b for b in S2_BANDS}
    assert scl_key(item) == "SCL"
    assert boa_offset(item.properties, item.assets["B04"].to_dict()) == 0.0  # 02.12
    item.properties["s2:processing_baseline"] = "05.10"  # no raster:bands offset given
    assert boa_offset(item.properties, item.assets["B04"].to_dict()) == -1000.0


class _TokenApi(BaseHTTPRequestHandler):
    """Planetary Computer's SAS token API, as it answers (on loopback)."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        body = json.dumps({"msft:expiry": expiry, "token": "sv=2024&sig=test"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import planetary_computer.sas
    import planetary_computer.settings

    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/sas/v1/token"
    monkeypatch.setenv("PC_SDK_SAS_URL", url)
    planetary_computer.settings.Settings.get.cache_clear()
    planetary_computer.sas.TOKEN_CACHE.clear()
    _TokenApi.asked.clear()
    yield url
    server.shutdown()
    planetary_computer.settings.Settings.get.cache_clear()
    planetary_computer.sas.TOKEN_CACHE.clear()


def test_planetary_computer_hrefs_are_signed_when_asked(token_api: str) -> None:
    item = _item("planetary_computer_sentinel-2-l2a.json")
    assert sign_items([item]) == [item]  # not asked: unchanged
    (signed,) = sign_items([item], "planetary-computer")
    assert signed.assets["B04"].href == item.assets["B04"].href + "?sv=2024&sig=test"
    assert signed.assets["tilejson"].href == item.assets["tilejson"].href  # not a blob
    assert _TokenApi.asked == ["/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"]  # once
    with pytest.raises(ImageryError, match="unknown signer"):
        sign_items([item], "aws")
