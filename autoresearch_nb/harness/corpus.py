"""A prepared corpus on disk: ``train.bin`` and ``val.bin`` (documents joined by ``DOC_SEPARATOR``) and
``meta.json`` (name, fingerprint, sizes), written last so a folder without it is never mistaken for a corpus.

    >>> corpus = load_corpus()            # the stdlib corpus, prepared on first use (offline, a few seconds)
    >>> corpus.fingerprint                # 'stdlib-py3.11.7-1a2b3c4d5e6f'
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AutoresearchError
from . import constants as C
from .runtime import dataset_dir

META = "meta.json"
_TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


class CorpusError(AutoresearchError, RuntimeError):
    """The corpus is missing or unreadable."""


@dataclass(frozen=True)
class Corpus:
    path: Path
    meta: dict

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    def split_bytes(self, split: str) -> np.ndarray:
        """The split as a read-only uint8 array (memory-mapped)."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {split!r}")
        path = self.path / f"{split}.bin"
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="r")


# ---- splitting and writing ----

def split_documents(docs: Iterable[tuple[str, bytes]], val_fraction: float = C.VAL_FRACTION
                    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """Deterministic split by document key: documents are ranked by sha1 of their key and the first ones go to
    validation until it holds ``val_fraction`` of the bytes. Same keys and sizes, same split, on any machine.
    Each split comes back sorted by key."""
    docs = sorted(docs)
    if len({key for key, _ in docs}) != len(docs):
        raise CorpusError("document keys must be unique")
    total = sum(len(text) for _, text in docs)
    ranked = sorted(docs, key=lambda d: hashlib.sha1(d[0].encode()).hexdigest())
    val, size = [], 0
    for doc in ranked:
        if size >= val_fraction * total or len(val) == len(docs) - 1:
            break
        val.append(doc)
        size += len(doc[1])
    val_keys = {key for key, _ in val}
    train = [d for d in docs if d[0] not in val_keys]
    return train, sorted(val)


def write_corpus(out: Path, name: str, train: Iterable[tuple[str, bytes]], val: Iterable[tuple[str, bytes]],
                 *, source: str, fingerprint_prefix: str | None = None) -> Corpus:
    """Write both splits then ``meta.json``; every file lands by atomic rename, so an interrupted run leaves
    either the old corpus or no corpus, never a half-written one."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)
    digest = hashlib.sha256()
    meta: dict = {"name": name, "source": source, "format": 1, "separator": C.DOC_SEPARATOR.hex()}
    for split, docs in (("train", train), ("val", val)):
        count, size, keys = _write_split(out / f"{split}.bin", docs, digest, split)
        meta[f"{split}_docs"], meta[f"{split}_bytes"] = count, size
        if len(keys) <= 20_000:
            meta[f"{split}_keys"] = keys
    if meta["val_bytes"] == 0 or meta["train_bytes"] == 0:
        raise CorpusError(f"{name}: a split is empty ({meta['train_bytes']} train, {meta['val_bytes']} val bytes)")
    meta["fingerprint"] = f"{fingerprint_prefix or name}-{digest.hexdigest()[:12]}"
    _atomic_write(out / META, json.dumps(meta, indent=1).encode())
    return Corpus(out, meta)


def _write_split(path: Path, docs: Iterable[tuple[str, bytes]], digest, split: str) -> tuple[int, int, list[str]]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count, size, keys = 0, 0, []
    digest.update(split.encode() + b"\n")
    try:
        with open(tmp, "wb") as f:
            for key, text in docs:
                if count:
                    f.write(C.DOC_SEPARATOR)
                    digest.update(C.DOC_SEPARATOR)
                    size += len(C.DOC_SEPARATOR)
                f.write(text)
                digest.update(text)
                count, size = count + 1, size + len(text)
                keys.append(key)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count, size, keys


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---- sources ----

def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_documents(root: Path | None = None) -> Iterator[tuple[str, bytes]]:
    """The running Python's own ``*.py`` files, outside test folders and site-packages (about 12 MB)."""
    root = Path(root) if root else stdlib_root()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _TEST_DIRS & set(rel.parts[:-1]) or not path.is_file():
            continue
        yield rel.as_posix(), path.read_bytes()


def folder_documents(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every text file under ``root`` (one document each) and every row of the ``text`` column of its parquet
    files. Hidden files and folders are skipped."""
    root = Path(root)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix == ".parquet":
            for i, text in enumerate(parquet_texts(path)):
                yield f"{rel.as_posix()}#{i:08d}", text
        else:
            data = path.read_bytes()
            if b"\x00" in data[:8192]:
                continue  # binary
            yield rel.as_posix(), data


def parquet_texts(path: Path, column: str = "text") -> Iterator[bytes]:
    import pyarrow.parquet as pq
    table = pq.ParquetFile(path)
    if column not in table.schema_arrow.names:
        raise CorpusError(f"{path.name} has no {column!r} column (columns: {table.schema_arrow.names})")
    for batch in table.iter_batches(columns=[column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            if value:
                yield value.encode("utf-8")


def prepare_stdlib(out: Path | None = None, root: Path | None = None) -> Corpus:
    """Build the default, offline corpus. The fingerprint carries the Python version, since each version's
    stdlib is different text."""
    out = Path(out) if out else dataset_dir("stdlib")
    train, val = split_documents(stdlib_documents(root))
    version = ".".join(map(str, sys.version_info[:3]))
    return write_corpus(out, "stdlib", train, val, source=str(root or stdlib_root()),
                        fingerprint_prefix=f"stdlib-py{version}")


def prepare_folder(folder: Path, out: Path, name: str | None = None) -> Corpus:
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder")
    docs = list(folder_documents(folder))
    if len(docs) < 2:
        raise CorpusError(f"{folder} holds {len(docs)} text document(s); need at least 2 to split")
    train, val = split_documents(docs)
    return write_corpus(out, name or folder.name, train, val, source=str(folder.resolve()))


# ---- loading ----

def load_corpus(path: Path | str | None = None, *, auto_prepare: bool = True) -> Corpus:
    """The prepared corpus at ``path`` (default: ``AUTORESEARCH_DATA`` or the cache). The default stdlib corpus
    is prepared on first use; any other must come from ``autoresearch-nb prepare``."""
    folder = Path(path) if path else dataset_dir()
    meta_path = folder / META
    if not meta_path.exists():
        explicit = path is not None or os.environ.get(C.ENV_DATA, "").strip() or \
            os.environ.get(C.ENV_DATASET, "").strip() not in ("", C.DEFAULT_DATASET)
        if auto_prepare and not explicit:
            print(f"preparing the stdlib corpus in {folder} (offline, one time)", file=sys.stderr, flush=True)
            return prepare_stdlib(folder)
        raise CorpusError(f"no prepared corpus in {folder}; run: autoresearch-nb prepare --dataset NAME")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise CorpusError(f"{meta_path} is not valid JSON: {exc}") from exc
    return Corpus(folder, meta)
