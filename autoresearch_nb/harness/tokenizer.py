"""Tokenizers. ``byte`` (256 symbols, nothing to train) is the default; ``bpe-N`` is a byte-exact BPE with N
symbols trained by the ``tokenizers`` library on the train split and cached beside the corpus.

Every tokenizer reports ``token_bytes``, the number of corpus bytes each id stands for, which is what lets
evaluate_bpb score any tokenizer in bits per *byte*.

Runs may write the cache, so trusted processes prepare with :func:`prepare_tokenizer`, which records the hash
of what it wrote in a manifest beside the holdout (runs cannot write there); the loop's pins trust only those.

    >>> tok = get_tokenizer(load_corpus(), "bpe-4096")
    >>> tok.decode(tok.encode(b"def f(x):\\n")) == b"def f(x):\\n"
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import constants as C
from .corpus import Corpus, holdout_dir
from .safefs import real_dir, write_file

# Pre-tokenization (GPT-2's idea, our pattern): words with one leading space, digit runs, punctuation runs,
# whitespace runs. Applied to latin-1 text so that one character is always one byte.
_ENCODE_BATCH_BYTES = 2**20
_SPLIT = r" ?[A-Za-z_\u00c0-\u00ff]+| ?[0-9]{1,3}| ?[^\sA-Za-z_0-9\u00c0-\u00ff]+|\s+(?!\S)|\s+"


class ByteTokenizer:
    name = "byte"
    vocab_size = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(bytes(data), dtype=np.uint8)

    def decode(self, ids) -> bytes:
        return bytes(int(i) for i in ids)

    @property
    def token_bytes(self) -> np.ndarray:
        return np.ones(256, dtype=np.int64)


class BPETokenizer:
    """BPE over raw bytes: text is read as latin-1, so the 256 base symbols are exactly the 256 byte values and
    every token's length in characters is its length in bytes. Documents are encoded separately and joined by the
    separator byte's own id, so merges never cross a document boundary."""

    def __init__(self, tokenizer, name: str):
        self._tok = tokenizer
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size()
        self._sep = tokenizer.token_to_id(C.DOC_SEPARATOR.decode("latin-1"))
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, idx in tokenizer.get_vocab().items():
            lengths[idx] = len(token)
        self._lengths = lengths

    @classmethod
    def train(cls, texts, vocab_size: int, name: str) -> "BPETokenizer":
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")
        alphabet = [bytes([b]).decode("latin-1") for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, min_frequency=2,
                                      show_progress=False, special_tokens=[], limit_alphabet=256)
        tok.train_from_iterator((t.decode("latin-1") for t in texts), trainer=trainer)
        return cls(tok, name)

    @classmethod
    def load(cls, path: Path, name: str) -> "BPETokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)), name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "BPETokenizer":
        """The tokenizer a saved file's ``data`` holds (so a caller that checked those bytes' hash builds
        from exactly them, with no second read of the file)."""
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_str(bytes(data).decode("utf-8")), name)

    def to_bytes(self) -> bytes:
        return self._tok.to_str().encode("utf-8")

    def save(self, path: Path) -> None:
        _replace(path, self.to_bytes())

    def encode(self, data: bytes) -> np.ndarray:
        docs = bytes(data).split(C.DOC_SEPARATOR)
        parts, batch, size = [], [], 0
        sep = np.array([self._sep], dtype=np.int64)
        for i, doc in enumerate(docs):
            batch.append(doc.decode("latin-1"))
            size += len(doc)
            # ~1 MB per call: the library holds a few hundred bytes per token until the batch is done
            if size >= _ENCODE_BATCH_BYTES or i == len(docs) - 1:
                for enc in self._tok.encode_batch(batch, add_special_tokens=False):
                    parts.extend((sep, np.asarray(enc.ids, dtype=np.int64)))
                batch, size = [], 0
        return np.concatenate(parts[1:]) if parts else np.zeros(0, dtype=np.int64)

    def decode(self, ids) -> bytes:
        return b"".join(self._tok.id_to_token(int(i)).encode("latin-1") for i in ids)

    @property
    def token_bytes(self) -> np.ndarray:
        return self._lengths


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one, never half), never
    through a link a run planted (:func:`.safefs.write_file`)."""
    write_file(path, data)


# BPE merges are learnt from at most this many train bytes (evenly spaced slices), so training memory and time
# stay bounded on corpora of any size; corpora below it (stdlib: ~11 MB) are learnt from whole.
BPE_SAMPLE_BYTES = 32 * 2**20
_SAMPLE_SLICES = 64


def tokenizer_path(corpus: Corpus, name: str) -> Path:
    return corpus.path / "tokenizers" / f"{name}-{corpus.fingerprint}.json"


def training_sample(train: np.ndarray, limit: int = BPE_SAMPLE_BYTES) -> list[bytes]:
    """The documents BPE learns from: all of ``train`` if it fits ``limit``, else evenly spaced slices."""
    if len(train) <= limit:
        return bytes(train).split(C.DOC_SEPARATOR)
    size = limit // _SAMPLE_SLICES
    stride = (len(train) - size) // (_SAMPLE_SLICES - 1)
    docs = []
    for i in range(_SAMPLE_SLICES):
        docs.extend(bytes(train[i * stride: i * stride + size]).split(C.DOC_SEPARATOR))
    return docs


def _bpe_size(name: str) -> int:
    match = re.fullmatch(r"bpe-(\d+)", name)
    if not match or not 257 <= int(match.group(1)) <= 65536:
        raise ValueError(f"tokenizer must be 'byte' or 'bpe-N' with 257 <= N <= 65536, not {name!r}")
    return int(match.group(1))


def get_tokenizer(corpus: Corpus | None = None, name: str = "byte"):
    """``byte`` or ``bpe-N`` (N in 257..65536). A BPE is trained on the corpus's train split the first time
    (seconds to a minute) and reused after."""
    if name == "byte":
        return ByteTokenizer()
    size = _bpe_size(name)
    if corpus is None:
        raise ValueError("a BPE tokenizer needs the corpus it is trained on")
    path = tokenizer_path(corpus, name)
    if path.exists():
        return BPETokenizer.load(path, name)
    tok = BPETokenizer.train(training_sample(corpus.split_bytes("train")), size, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


def manifest_path(corpus: Corpus | Path) -> Path:
    """The trusted tokenizers' hashes (:data:`constants.TOKENIZER_MANIFEST`), in the holdout folder."""
    return holdout_dir(corpus) / C.TOKENIZER_MANIFEST


def trusted_hashes(corpus: Corpus | Path) -> dict[str, str]:
    """``{file name: sha256}`` of the tokenizer files a trusted process wrote ({} without a manifest); the
    manifest is read by :func:`autoresearch_nb.provenance.trusted_tokenizers`, the reader the pins use."""
    from ..provenance import trusted_tokenizers

    return trusted_tokenizers(corpus.path if isinstance(corpus, Corpus) else Path(corpus))


def prepare_tokenizer(corpus: Corpus, name: str):
    """For trusted processes only (the loop's prepare step, the setup command, ``autoresearch-nb prepare``):
    :func:`get_tokenizer`, but a cached file is reused only when its hash is one a trusted process recorded;
    any other (a run may write the cache) is trained again, and the hash of the bytes written is recorded in
    the manifest beside the holdout, which runs cannot write."""
    if name == "byte":
        return ByteTokenizer()
    size = _bpe_size(name)
    path = tokenizer_path(corpus, name)
    trusted = trusted_hashes(corpus)
    try:
        data = path.read_bytes()
    except OSError:
        data = None
    if data is not None and trusted.get(path.name) == hashlib.sha256(data).hexdigest():
        return BPETokenizer.from_bytes(data, name)
    tok = BPETokenizer.train(training_sample(corpus.split_bytes("train")), size, name)
    data = tok.to_bytes()
    manifest = manifest_path(corpus)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    real_dir(corpus.path, path.parent.relative_to(corpus.path).as_posix())  # runs may write there: no links
    with _locked(manifest.with_name(manifest.name + ".lock")):
        # read again under the lock: another trusted process (a second session) may have recorded its own
        # tokenizer while this one trained, and a manifest written from the first read would drop it
        trusted = trusted_hashes(corpus)
        _replace(path, data)
        # the hash of the bytes this process wrote, not of the file: a run may replace it meanwhile
        trusted[path.name] = hashlib.sha256(data).hexdigest()
        _replace(manifest, json.dumps(trusted, indent=1, sort_keys=True).encode())
    return tok


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (flock; a no-op where there is none) for a read-modify-write."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows: no flock; concurrent prepares there may drop a manifest entry
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock
