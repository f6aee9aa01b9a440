"""Which asset hrefs imagery may open: raster files, and remote ones only when asked.

A STAC item names its files by href, and GDAL opens nearly anything it is given: a
``/vsicurl/`` path fetches any address, a VRT reads any local file it points at. An
href of a catalogue on disk or of a SAFE product is therefore accepted only as a local
raster file (GeoTIFF/COG, JPEG 2000 of SAFE products); ``http(s)://`` and ``s3://``
hrefs only where the user asked for remote assets (a STAC API search, or
``--remote-assets``); GDAL's own path syntax (``/vsi…``), VRTs and other schemes never.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: File suffixes imagery is read from (lower case).
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
#: Schemes of remote assets (read only when asked for).
REMOTE_SCHEMES = ("http", "https", "s3")


class HrefError(ValueError):
    """An asset href imagery does not open."""


def check_href(href: str, remote: bool = False) -> str:
    """``href`` if imagery may open it, else :class:`HrefError` saying why.

    Args:
        href: The asset's href.
        remote: Whether remote (``http(s)://``, ``s3://``) assets were asked for.
    """
    text = str(href)
    if text.strip().lower().startswith("/vsi"):
        raise HrefError(f"{text}: GDAL's virtual file paths are not opened")
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    path = parsed.path if scheme in ("file", *REMOTE_SCHEMES) else text
    if scheme in REMOTE_SCHEMES:
        if not remote:
            raise HrefError(f"{text}: a remote asset; read remote assets only when asked "
                            "(--remote-assets, or a STAC API search)")
    elif scheme not in ("", "file") and len(scheme) > 1:  # "c:" of a Windows path is not
        raise HrefError(f"{text}: assets are files or http(s)/s3 URLs, not {scheme}://")
    if Path(path).suffix.lower() not in RASTER_SUFFIXES:
        raise HrefError(f"{text}: not a raster file imagery reads "
                        f"({', '.join(RASTER_SUFFIXES)}; a VRT is never opened)")
    return text


def check_items(items: Iterable[Any], keys: Sequence[str] | None = None,
                remote: bool = False) -> None:
    """Check the hrefs of the items' assets (``keys``, or every raster asset).

    Raises:
        HrefError: Naming the item and the href.
    """
    for item in items:
        for key, asset in item.assets.items():
            if keys is not None and key not in keys:
                continue
            try:
                check_href(asset.href, remote)
            except HrefError as err:
                raise HrefError(f"item {item.id}, asset {key}: {err}") from None
