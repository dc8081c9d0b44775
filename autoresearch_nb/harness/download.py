"""Downloads that survive bad networks: resumed with HTTP Range from a ``.part`` file, retried with backoff,
checked (length, sha256 when the server states one, and a caller's validator such as "is valid parquet"), and
renamed into place only when whole, so a shard file either is complete and checked or does not exist.

    >>> fetch("https://host/shard_00000.parquet", Path("downloads/shard_00000.parquet"), validate=check_parquet)
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import AutoresearchError

log = logging.getLogger("autoresearch_nb")

CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(AutoresearchError, RuntimeError):
    """A file could not be fetched whole and valid. ``url`` says which."""

    def __init__(self, message: str, url: str = ""):
        super().__init__(message)
        self.url = url


class NotFound(DownloadError):
    """The server has no such file (HTTP 404): the end of a shard list, or a wrong base URL."""


class _Retry(Exception):
    pass


def fetch(url: str, dest: Path, *, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
          validate: Callable[[Path], None] | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless it is already there. Bytes go to ``dest.part`` first; a broken
    connection resumes from there (also in a later run); a complete file is checked, then renamed to ``dest``.
    A file that fails a check is deleted and :class:`DownloadError` names the reason."""
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected_sha = None
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            expected_sha = _download(url, part, timeout, progress) or expected_sha
            break
        except _Retry as exc:
            last_error = exc.__cause__ or exc
            log.warning("download of %s interrupted (%s); retrying", url, last_error)
    else:
        raise DownloadError(f"{dest.name}: download failed after {retries + 1} tries ({last_error}); "
                            f"{part.name} keeps the bytes so far, run again to resume", url)
    _check(part, dest.name, url, expected_sha, validate)
    os.replace(part, dest)
    return dest


def _download(url: str, part: Path, timeout: float, progress: bool) -> str | None:
    """One attempt. Returns the sha256 the server stated (if any); raises _Retry on transient trouble."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "autoresearch_nb"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFound(f"{url}: not found (HTTP 404)", url) from None
        if exc.code == 416:  # our partial file is not a prefix of theirs any more: start over
            part.unlink(missing_ok=True)
            raise _Retry("range not satisfiable") from exc
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retry(f"HTTP {exc.code}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry(str(exc)) from exc
    with response:
        sha = _stated_sha256(response.headers)
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server resumed at the wrong offset ({response.headers.get('Content-Range')})")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        bar = _bar(part.name.removesuffix(".part"), total, have, progress)
        try:
            with open(part, mode) as f:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(str(exc) or type(exc).__name__) from exc
        finally:
            bar.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retry(f"connection closed at {size:,} of {total:,} bytes")
    return sha


def _stated_sha256(headers) -> str | None:
    for name in ("X-Linked-Etag", "ETag"):
        value = (headers.get(name) or "").strip().removeprefix("W/").strip('"').lower()
        if _SHA256.match(value):
            return value
    return None


def _check(part: Path, name: str, url: str, sha: str | None, validate) -> None:
    if sha is not None:
        digest = hashlib.sha256()
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{name}: sha256 mismatch (got {digest.hexdigest()[:12]}, server says "
                                f"{sha[:12]}); the corrupt file was removed, run again to re-download", url)
    if validate is not None:
        try:
            validate(part)
        except Exception as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{name}: downloaded file is corrupt ({exc}); it was removed, run again to "
                                f"re-download", url) from exc


def check_parquet(path: Path) -> None:
    """Raise unless ``path`` is a readable parquet file with a ``text`` column."""
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    if "text" not in pf.schema_arrow.names:
        raise ValueError(f"no 'text' column (columns: {pf.schema_arrow.names})")
    for i in range(pf.num_row_groups):
        pf.read_row_group(i, columns=["text"])


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(name: str, total: int | None, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                leave=False)
