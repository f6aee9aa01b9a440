"""Files as the project writes them: content hashes, and no partial files ever.

Everything that writes a result people rely on (class maps, reports, exported models,
downloaded scenes) writes it under a temporary name beside the destination and renames
it into place only when it is complete (:func:`staged`), so a crash, a kill or an error
leaves the destination as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Bytes read at a time when hashing.
HASH_BLOCK = 1 << 22


def _read_umask() -> int:
    """The process's umask (read by setting it and back, once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The umask the process started with: staged results get its permissions.
UMASK = _read_umask()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staged(dst: str | Path, *, directory: bool = False, prefix: str | None = None,
           suffix: str = "") -> Iterator[Path]:
    """A temporary file (or folder) beside ``dst``, renamed to ``dst`` if the block succeeds.

    The temporary name is hidden (it starts with a dot, or with ``prefix``) and lives in
    ``dst``'s folder so that the rename is atomic. If the block raises, the temporary
    file or folder is removed and ``dst`` is left untouched. The result gets the
    permissions of an ordinary write under the process's umask (the temporary is
    private while it is written).

    Args:
        dst: The final path.
        directory: Stage a folder instead of a file.
        prefix: Prefix of the temporary name (default ``.<dst name>.``).
        suffix: Suffix of the temporary name (drivers that look at extensions).

    Yields:
        The temporary path to write.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    prefix = prefix if prefix is not None else f".{dst.name}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dst.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dst.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp make private temporaries; the result gets the permissions an
        # ordinary write would (the umask's), so a store or model built by one user can
        # be served by another. Private places (the map page's results) are private
        # folders.
        os.chmod(tmp, (0o777 if directory else 0o666) & ~UMASK)
        os.replace(tmp, dst)
    finally:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(dst: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``dst`` through :func:`staged` (never a partial file)."""
    with staged(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def read_vector_file(path: str | Path, what: str, error: type[Exception] = ValueError
                     ) -> Any:
    """A vector file GeoPandas reads, with a CRS, as a GeoDataFrame.

    Args:
        path: The file (GeoJSON, GeoPackage, shapefile, ...).
        what: What its features are, for the message (``labels``, ``zones``).
        error: The exception raised (a ``ValueError`` subclass of the caller's).

    Raises:
        error: If the file cannot be read or has no CRS, naming it.
    """
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as err:  # pyogrio raises many kinds
        raise error(f"{path}: not a readable vector file ({err})") from err
    if frame.crs is None:
        raise error(f"{path}: the {what} have no CRS")
    return frame
