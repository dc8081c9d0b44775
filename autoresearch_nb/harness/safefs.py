"""Writing into caches that runs can write too, without following what a run planted there.

The token and tokenizer caches under a dataset folder are writable by runs (a run tokenizes a split its new
tokenizer needs), and the same folders are written by trusted processes (the loop's prepare step,
``autoresearch-nb prepare``). A run can plant a symlink where a folder or file is expected, e.g.
``tokens/bpe-2048-<fingerprint>`` pointing at the user's checkout; ``mkdir(parents=True)`` and ``open()`` would
follow it (``O_NOFOLLOW`` guards only the last component). :func:`real_dir` walks every component below a
folder runs cannot write and replaces anything that is not a real directory; :func:`write_file` creates a new
file with ``O_EXCL | O_NOFOLLOW`` and renames it into place (the rename replaces a link, never follows it).

Left: a run of *another* session on the same cache could plant a link between the walk and the write (a window
of microseconds); within a session, trusted preparation runs before any run.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def real_dir(base: Path, *parts: str) -> Path:
    """``base/parts...`` as real directories, made where missing; a symlink, file or other entry standing
    where a directory belongs is removed first (never followed). ``base`` itself is trusted."""
    path = Path(base)
    for part in (p for rel in parts for p in Path(rel).parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(path)  # a link (to anywhere) or a file: the cache's own name, taken back
            st = None
        if st is None:
            try:
                os.mkdir(path)
            except FileExistsError:  # made meanwhile: check it again
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise
    return path


def write_file(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically: a new temporary file beside it (``O_EXCL | O_NOFOLLOW``: never one a
    run planted, nor through a link), then a rename over whatever ``path`` was (a link is replaced, not
    followed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if stat.S_ISDIR(os.lstat(tmp).st_mode):
            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


__all__ = ["real_dir", "write_file"]
