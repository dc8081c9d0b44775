"""A split tokenized into shards: streaming, in parallel, resumable, read back by memory map.

The split file is cut at document separators into chunks of about ``CHUNK_BYTES``; each worker process maps the
split file itself, encodes one chunk and writes ``shard_NNNNN.bin`` (raw ``uint16``, or ``uint32`` above 65,536
symbols) by atomic rename. The parent only passes byte offsets, so memory stays bounded by the workers' chunks
whatever the corpus size. A rerun after an interruption keeps the shards already written. ``manifest.json``
(written last) lists every shard with its token count and sha256.

    >>> shards = tokenize_split(corpus, tokenizer, "train")
    >>> len(shards), shards.arrays[0][:8]
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import constants as C
from .corpus import Corpus, CorpusError
from .safefs import real_dir, write_file

CHUNK_BYTES = 8 * 2**20  # bytes of the split per shard
ENCODE_BYTES = 2**20
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Shards:
    """The token shards of one split, each a read-only memory map."""
    path: Path
    arrays: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return sum(len(a) for a in self.arrays)

    def windows(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        """``count`` random windows of ``size`` tokens (int64), each inside one shard; a shard is picked in
        proportion to the windows it holds, so every start position is equally likely."""
        starts_per_shard = np.array([max(0, len(a) - size + 1) for a in self.arrays])
        total = int(starts_per_shard.sum())
        if total <= 0:
            raise ValueError(f"no shard of {self.path} holds {size} tokens")
        picks = rng.integers(0, total, size=count)
        ends = np.cumsum(starts_per_shard)
        which = np.searchsorted(ends, picks, side="right")
        out = np.empty((count, size), dtype=np.int64)
        for row, (shard, pick) in enumerate(zip(which, picks)):
            start = pick - (ends[shard] - starts_per_shard[shard])
            out[row] = self.arrays[shard][start:start + size]
        return out


def chunk_bounds(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """Byte ranges covering the file, each ending just after a document separator (or at the end)."""
    size = path.stat().st_size
    if size == 0:
        return []
    bounds, start = [], 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        while start < size:
            cut = mm.find(C.DOC_SEPARATOR, min(start + chunk_bytes, size) - 1) if start + chunk_bytes < size else -1
            end = size if cut < 0 else cut + 1
            bounds.append((start, end))
            start = end
    return bounds


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


_TOKENIZERS: dict = {}


def _encode_chunk(split_file: str, start: int, end: int, tokenizer_file: str, name: str, dtype: str,
                  out: str) -> tuple[int, str]:
    """Worker: encode bytes [start, end) of the split into ``out`` (atomically); return (tokens, sha256)."""
    from .tokenizer import BPETokenizer
    key = (tokenizer_file, name)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = BPETokenizer.load(Path(tokenizer_file), name)
    tokenizer, parts = _TOKENIZERS[key], []
    with open(split_file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        # encode ~1 MB at a time: the tokenizers library holds ~300 bytes per token while encoding
        while start < end:
            cut = mm.find(C.DOC_SEPARATOR, start + ENCODE_BYTES, end)
            piece_end = end if cut < 0 else cut + 1
            parts.append(tokenizer.encode(mm[start:piece_end]).astype(dtype))
            start = piece_end
    ids = np.concatenate(parts)
    write_file(Path(out), ids.tobytes())  # never through a link a run planted in the shared cache
    return len(ids), hashlib.sha256(ids.tobytes()).hexdigest()


def _describe(path: Path, dtype: np.dtype) -> tuple[int, str]:
    digest, count = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(2**22):
            digest.update(block)
            count += len(block)
    return count // dtype.itemsize, digest.hexdigest()


def tokenize_split(corpus: Corpus, tokenizer, split: str, *, workers: int | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> Shards:
    """The split's token shards under ``tokens/<tokenizer>-<fingerprint>/<split>/``, made on first use."""
    from .tokenizer import tokenizer_path
    rel = ("tokens", f"{tokenizer.name}-{corpus.fingerprint}", split)
    folder = corpus.path.joinpath(*rel)
    dtype = token_dtype(tokenizer.vocab_size)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        # runs may write this cache: every folder on the way is made real (a planted link is removed, not
        # followed into the user's checkout), and each file is written by O_EXCL | O_NOFOLLOW and a rename
        real_dir(corpus.path, *rel)
        split_file = corpus.path / f"{split}.bin"
        bounds = chunk_bounds(split_file, chunk_bytes)
        if not bounds:
            raise CorpusError(f"the {split} split of {corpus.path} is empty")
        names = [f"shard_{i:05d}.bin" for i in range(len(bounds))]
        todo = [(i, b) for i, b in enumerate(bounds) if not (folder / names[i]).exists()]
        args = [(str(split_file), s, e, str(tokenizer_path(corpus, tokenizer.name)), tokenizer.name, dtype.str,
                 str(folder / names[i])) for i, (s, e) in todo]
        workers = max(1, min(workers or os.cpu_count() or 1, len(args)))
        if workers == 1:
            for a in args:
                _encode_chunk(*a)
        else:
            import multiprocessing
            # spawn: the parent may hold tokenizers' thread pool, which a fork would copy in a locked state
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for future in [pool.submit(_encode_chunk, *a) for a in args]:
                    future.result()
        entries = []
        for name, (start, end) in zip(names, bounds):
            tokens, sha = _describe(folder / name, dtype)
            entries.append({"file": name, "bytes": [start, end], "tokens": tokens, "sha256": sha})
        manifest = {"tokenizer": tokenizer.name, "corpus": corpus.fingerprint, "split": split,
                    "dtype": dtype.name, "tokens": sum(e["tokens"] for e in entries), "shards": entries}
        write_file(manifest_path, json.dumps(manifest, indent=1).encode())
    manifest = json.loads(manifest_path.read_text())
    arrays = tuple(np.memmap(folder / e["file"], dtype=manifest["dtype"], mode="r") if e["tokens"] else
                   np.zeros(0, dtype=manifest["dtype"]) for e in manifest["shards"])
    return Shards(folder, arrays)
