"""A prepared corpus on disk: ``train.bin`` and ``val.bin`` (documents joined by ``DOC_SEPARATOR``) and
``meta.json`` (name, fingerprint, sizes, the sha256 of every split), written last so a folder without it is never
mistaken for a corpus. The **holdout** split lives in a sibling folder, ``<folder>.holdout/holdout.bin``
(:func:`holdout_dir`): the sandbox lets a run read the corpus folder, never its sibling, and the harness API
train.py uses has no way to it (only the loop's verifier reads it, through :func:`holdout_bytes`).

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
from itertools import chain
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AutoresearchError
from . import constants as C
from .runtime import dataset_dir, env

META = "meta.json"
SPLITS = ("train", "val", "holdout")
READABLE = ("train", "val")  # the splits a run may read; the holdout is the verifier's alone
FORMAT = 3                   # 3: the holdout moved out of the corpus folder (2 kept holdout.bin inside it)
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

    @property
    def has_holdout(self) -> bool:
        """True when the corpus was prepared with a holdout split (kept in :func:`holdout_dir`)."""
        return bool(self.meta.get("holdout_bytes")) and int(self.meta.get("format", 1)) >= FORMAT

    def split_bytes(self, split: str) -> np.ndarray:
        """The train or val split as a read-only uint8 array (memory-mapped). Never the holdout: that one is
        read by the loop's verifier alone (:func:`holdout_bytes`)."""
        if split not in READABLE:
            raise ValueError(f"split must be one of {READABLE}, not {split!r}")
        return _memmap(self.path / f"{split}.bin")


def _memmap(path: Path) -> np.ndarray:
    if not path.exists() or path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")


def holdout_dir(corpus: Corpus | Path | str) -> Path:
    """The folder holding ``corpus``'s holdout split: a sibling of the corpus folder (``<folder>.holdout``),
    so a sandboxed run, which may read the corpus folder, cannot read it. Public so the loop can grant the
    verifier (and the setup command, which prepares it) access to it.

    >>> holdout_dir(Path("/cache/stdlib"))
    PosixPath('/cache/stdlib.holdout')
    """
    folder = Path(corpus.path if isinstance(corpus, Corpus) else corpus).expanduser().absolute()
    return folder.with_name(folder.name + C.HOLDOUT_SUFFIX)


def holdout_bytes(corpus: Corpus) -> np.ndarray:
    """The holdout split (empty when the corpus has none). Raises :class:`CorpusError` when the file does not
    match the sha256 the corpus recorded (a run may have written to shared folders)."""
    if not corpus.has_holdout:
        return np.zeros(0, dtype=np.uint8)
    path = holdout_dir(corpus) / "holdout.bin"
    data = _memmap(path)
    if len(data) != corpus.meta["holdout_bytes"] or \
            hashlib.sha256(data).hexdigest() != corpus.meta.get("holdout_sha256"):
        raise CorpusError(f"{path} does not match the corpus's manifest (changed or missing); "
                          "run: autoresearch-nb prepare")
    return data


# ---- splitting and writing ----

def assign_splits(sizes: Iterable[tuple[str, int]], val_fraction: float = C.VAL_FRACTION,
                  holdout_fraction: float = 0.0) -> dict[str, str]:
    """Each document key -> ``train``, ``val`` or ``holdout``, from keys and sizes only (so a corpus bigger than
    memory can be split in one pass). Documents are ranked by sha1 of their key: the first go to validation
    until it holds ``val_fraction`` of the bytes, the next to the holdout until it holds ``holdout_fraction``;
    every split keeps at least one document when it can. Same keys and sizes, same split, on any machine."""
    sizes = list(sizes)
    keys = [key for key, _ in sizes]
    if len(set(keys)) != len(keys):
        raise CorpusError("document keys must be unique")
    total = sum(size for _, size in sizes)
    ranked = sorted(sizes, key=lambda d: hashlib.sha1(d[0].encode()).hexdigest())
    split = dict.fromkeys(keys, "train")
    left, i = len(ranked), 0
    for name, fraction in (("val", val_fraction), ("holdout", holdout_fraction)):
        size = 0
        while i < len(ranked) and fraction > 0 and size < fraction * total and left > 1:
            split[ranked[i][0]] = name
            size, i, left = size + ranked[i][1], i + 1, left - 1
    return split


def split_documents(docs: Iterable[tuple[str, bytes]], val_fraction: float = C.VAL_FRACTION
                    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """In-memory train/val split (see :func:`assign_splits`); each split comes back sorted by key."""
    docs = sorted(docs)
    split = assign_splits(((key, len(text)) for key, text in docs), val_fraction)
    return [d for d in docs if split[d[0]] == "train"], [d for d in docs if split[d[0]] == "val"]


def write_corpus(out: Path, name: str, train: Iterable[tuple[str, bytes]], val: Iterable[tuple[str, bytes]],
                 *, holdout: Iterable[tuple[str, bytes]] = (), source: str,
                 fingerprint_prefix: str | None = None) -> Corpus:
    """Write the splits then ``meta.json``; every file lands by atomic rename, and a split whose bytes did not
    change is left as it was, so a session reading the corpus while another process prepares it again sees the
    old corpus or the new one, never none (the old ``meta.json`` stays until the new one replaces it)."""
    stream = chain(((s, k, t) for s, docs in (("train", train), ("val", val), ("holdout", holdout))
                    for k, t in docs))
    return write_stream(out, name, stream, source=source, fingerprint_prefix=fingerprint_prefix)


def write_stream(out: Path, name: str, docs: Iterable[tuple[str, str, bytes]], *, source: str,
                 fingerprint_prefix: str | None = None) -> Corpus:
    """Write ``(split, key, text)`` documents, in any order of splits, to ``<split>.bin`` as they come.
    ``meta.json`` records each split's size and sha256 (the hash manifest) and the fingerprint."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hidden = holdout_dir(out)
    hidden.mkdir(parents=True, exist_ok=True)
    try:  # what is there now: a split with the same size and hash is not replaced (readers keep reading it)
        old = json.loads((out / META).read_text())
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    (out / "holdout.bin").unlink(missing_ok=True)  # a format-2 corpus kept it where runs can read it
    meta: dict = {"name": name, "source": source, "format": FORMAT, "separator": C.DOC_SEPARATOR.hex()}
    writers = {split: _SplitWriter((hidden if split == "holdout" else out) / f"{split}.bin") for split in SPLITS}
    try:
        for split, key, text in docs:
            writers[split].add(key, text)
        for split, writer in writers.items():
            writer.commit(old.get(f"{split}_bytes"), old.get(f"{split}_sha256"))
    finally:
        for writer in writers.values():
            writer.discard()
    fingerprint = hashlib.sha256()
    for split, w in writers.items():
        meta[f"{split}_docs"], meta[f"{split}_bytes"], meta[f"{split}_sha256"] = w.count, w.size, w.digest.hexdigest()
        if len(w.keys) <= 20_000 and split != "holdout":  # which documents are held out is not said to runs
            meta[f"{split}_keys"] = w.keys
        if w.count or split != "holdout":  # a corpus without a holdout keeps its format-1 fingerprint
            fingerprint.update(f"{split}\n".encode() + w.digest.digest())
    if meta["val_bytes"] == 0 or meta["train_bytes"] == 0:
        raise CorpusError(f"{name}: a split is empty ({meta['train_bytes']} train, {meta['val_bytes']} val bytes)")
    meta["fingerprint"] = f"{fingerprint_prefix or name}-{fingerprint.hexdigest()[:12]}"
    holdout = writers["holdout"]
    _atomic_write(hidden / META, json.dumps({"corpus": str(out.absolute()), "fingerprint": meta["fingerprint"],
                                             "holdout_keys": holdout.keys[:20_000]}, indent=1).encode())
    _atomic_write(out / META, json.dumps(meta, indent=1).encode())
    return Corpus(out, meta)


class _SplitWriter:
    """One split file, written to a temporary name and renamed into place by ``commit``."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.file = open(self.tmp, "wb")
        self.digest, self.count, self.size, self.keys = hashlib.sha256(), 0, 0, []

    def add(self, key: str, text: bytes) -> None:
        if self.count:
            self.file.write(C.DOC_SEPARATOR)
            self.digest.update(C.DOC_SEPARATOR)
            self.size += len(C.DOC_SEPARATOR)
        self.file.write(text)
        self.digest.update(text)
        self.count, self.size = self.count + 1, self.size + len(text)
        self.keys.append(key)

    def commit(self, old_size: object = None, old_sha256: object = None) -> None:
        """Rename into place, unless the file there already holds these bytes (same size and hash as its
        ``meta.json`` records, checked on disk by size): then it stays, and readers never see it change."""
        self.file.close()
        try:
            same = old_size == self.size and old_sha256 == self.digest.hexdigest() and \
                self.path.stat().st_size == self.size
        except OSError:
            same = False
        if not same:
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


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
    """Build the default, offline corpus, with a holdout (``HOLDOUT_FRACTION``). The fingerprint carries the
    Python version, since each version's stdlib is different text. Any Python process can read the stdlib's
    sources, so this holdout catches overfitting by selection, not deliberate leakage."""
    out = Path(out) if out else dataset_dir("stdlib")
    docs = sorted(stdlib_documents(root))
    split = assign_splits(((key, len(text)) for key, text in docs), C.VAL_FRACTION, C.HOLDOUT_FRACTION)
    version = ".".join(map(str, sys.version_info[:3]))
    return write_stream(out, "stdlib", ((split[key], key, text) for key, text in docs),
                        source=str(root or stdlib_root()), fingerprint_prefix=f"stdlib-py{version}")


def prepare_folder(folder: Path, out: Path, name: str | None = None) -> Corpus:
    """A folder of text/parquet files as a corpus, in two streaming passes (keys and sizes, then the text), so
    memory stays flat whatever the folder's size. Splits: val, holdout (``HOLDOUT_FRACTION``) and train."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder")
    sizes = [(key, len(text)) for key, text in folder_documents(folder)]
    if len(sizes) < 2:
        raise CorpusError(f"{folder} holds {len(sizes)} text document(s); need at least 2 to split")
    split = assign_splits(sizes, C.VAL_FRACTION, C.HOLDOUT_FRACTION)
    docs = ((split[key], key, text) for key, text in folder_documents(folder))
    return write_stream(out, name or folder.name, docs, source=str(folder.resolve()))


# ---- loading ----

def load_corpus(path: Path | str | None = None, *, auto_prepare: bool = True) -> Corpus:
    """The prepared corpus at ``path`` (default: ``AUTORESEARCH_DATA`` or the cache). The default stdlib corpus
    is prepared on first use; any other must come from ``autoresearch-nb prepare``."""
    folder = Path(path) if path else dataset_dir()
    meta_path = folder / META
    if not meta_path.exists():
        explicit = path is not None or env(C.ENV_DATA) or env(C.ENV_DATASET) not in ("", C.DEFAULT_DATASET)
        if auto_prepare and not explicit:
            print(f"preparing the stdlib corpus in {folder} (offline, one time)", file=sys.stderr, flush=True)
            return prepare_stdlib(folder)
        raise CorpusError(f"no prepared corpus in {folder}; run: autoresearch-nb prepare --dataset NAME")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise CorpusError(f"{meta_path} is not valid JSON: {exc}") from exc
    return upgrade(Corpus(folder, meta), reprepare=auto_prepare)


def upgrade(corpus: Corpus, reprepare: bool = True) -> Corpus:
    """A corpus prepared before the holdout moved out of its folder, brought up to date where it can be: a
    format-2 ``holdout.bin`` is moved to :func:`holdout_dir` (same bytes, same fingerprint); with ``reprepare``
    the stdlib corpus without a holdout is prepared again (its train split loses the held-out files, so its
    fingerprint changes and the provenance of later rows says so). Where the folder is read-only (inside a
    sandboxed run) the corpus is returned as it is: the setup command (``autoresearch-nb prepare``) upgrades it
    before any run."""
    meta = corpus.meta
    if int(meta.get("format", 1)) >= FORMAT:
        return corpus
    inside = corpus.path / "holdout.bin"
    try:
        if meta.get("holdout_bytes") and inside.is_file():
            hidden = holdout_dir(corpus)
            hidden.mkdir(parents=True, exist_ok=True)
            keys = meta.pop("holdout_keys", [])
            _atomic_write(hidden / META, json.dumps({"corpus": str(corpus.path.absolute()),
                                                     "fingerprint": meta["fingerprint"], "holdout_keys": keys},
                                                    indent=1).encode())
            os.replace(inside, hidden / "holdout.bin")
            meta = {**meta, "format": FORMAT}
            _atomic_write(corpus.path / META, json.dumps(meta, indent=1).encode())
            return Corpus(corpus.path, meta)
        if reprepare and meta.get("name") == C.DEFAULT_DATASET and not meta.get("holdout_bytes"):
            print(f"preparing the stdlib corpus again in {corpus.path}, now with a holdout split (one time)",
                  file=sys.stderr, flush=True)
            source = Path(meta.get("source") or "")
            return prepare_stdlib(corpus.path, root=source if source.is_dir() else None)
    except OSError:
        pass  # read-only here: the loop's setup upgrades it
    return corpus
