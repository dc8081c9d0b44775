# Run: python -m pytest tests/test_harness_tokenizer.py -q
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import tokenizers

from autoresearch_nb.harness.corpus import prepare_folder
from autoresearch_nb.harness.tokenizer import BPETokenizer, ByteTokenizer, get_tokenizer

SAMPLE = b"def area(r):\n    return 3.14159 * r ** 2\n\n\x00caf\xc3\xa9 \xff\xfe raw bytes\n"


def small_corpus(tmp_path):
    """Six small Python files as a prepared folder corpus (a BPE of a few hundred symbols trains in a blink)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.py").write_text(f"value_{i} = compute({i})\n" * 40)
    return prepare_folder(src, tmp_path / "out")


def test_byte_tokenizer_round_trips():
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE
    assert tok.vocab_size == 256 and tok.token_bytes.sum() == 256


def test_bpe_round_trips_any_bytes_and_counts_them():
    texts = [b"def f(x):\n    return x + 1\n" * 50, b"class A:\n    pass\n" * 50]
    tok = BPETokenizer.train(texts, 300, "bpe-300")
    ids = tok.encode(SAMPLE)
    assert tok.decode(ids) == SAMPLE
    assert int(tok.token_bytes[ids].sum()) == len(SAMPLE)
    assert len(tok.encode(texts[0])) < len(texts[0]) / 2  # it does compress


def test_get_tokenizer_trains_once_and_caches(tmp_path):
    corpus = small_corpus(tmp_path)
    tok = get_tokenizer(corpus, "bpe-320")
    (cached,) = (corpus.path / "tokenizers").glob("bpe-320-*.json")
    # Two trainings give the same encoding, so mark the cached file and see the mark come back.
    marked = tokenizers.Tokenizer.from_file(str(cached))
    assert marked.add_tokens(["ZZQ_MARK"]) == 1
    marked.save(str(cached))
    again = get_tokenizer(corpus, "bpe-320")  # loaded from the file, not trained again
    assert again.vocab_size == tok.vocab_size + 1
    assert list((corpus.path / "tokenizers").glob("bpe-320-*.json")) == [cached]


@pytest.mark.parametrize("name", ["bpe", "bpe-10", "wordpiece"])
def test_bad_tokenizer_names_are_refused(name):
    with pytest.raises(ValueError):
        get_tokenizer(None, name)


def test_bpe_encodes_in_bounded_batches_with_the_same_ids(monkeypatch):
    from autoresearch_nb.harness import tokenizer as module
    docs = [f"document {i} holds some words\n".encode() * (i + 1) for i in range(30)]
    tok = BPETokenizer.train(docs, 300, "bpe-300")
    data = b"\x00".join(docs)
    whole = tok.encode(data)
    monkeypatch.setattr(module, "_ENCODE_BATCH_BYTES", 100)  # a flush every few documents
    assert np.array_equal(tok.encode(data), whole) and tok.decode(whole) == data
    assert len(tok.encode(b"")) == 0 and tok.decode(tok.encode(b"\x00\x00")) == b"\x00\x00"


def test_prepare_tokenizer_trusts_only_the_files_it_recorded(tmp_path):
    """A tokenizer a run wrote into the cache (no hash in the manifest beside the holdout) is trained again by
    the trusted prepare step; one it recorded is reused as is, built from the bytes it checked."""
    from autoresearch_nb.harness.tokenizer import manifest_path, prepare_tokenizer, tokenizer_path, trusted_hashes

    corpus = small_corpus(tmp_path)
    size = get_tokenizer(corpus, "bpe-320").vocab_size  # as a run would: cached, but in no manifest
    path = tokenizer_path(corpus, "bpe-320")
    marked = tokenizers.Tokenizer.from_file(str(path))
    assert marked.add_tokens(["ZZQ_MARK"]) == 1
    marked.save(str(path))  # poisoned
    assert trusted_hashes(corpus) == {}
    tok = prepare_tokenizer(corpus, "bpe-320")
    assert tok.vocab_size == size and "ZZQ_MARK" not in path.read_text()  # trained again, over the poison
    assert trusted_hashes(corpus) == {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    assert manifest_path(corpus).parent.name.endswith(".holdout")  # where runs can neither read nor write
    before = path.stat().st_ino, path.stat().st_mtime_ns
    again = prepare_tokenizer(corpus, "bpe-320")
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before  # trusted: reused, not trained
    assert again.decode(again.encode(SAMPLE)) == SAMPLE
    assert BPETokenizer.from_bytes(path.read_bytes(), "bpe-320").vocab_size == size


def test_two_trusted_prepares_at_once_keep_both_manifest_entries(tmp_path, monkeypatch):
    """Two sessions preparing different tokenizers on one corpus: each records its hash under a lock, reading
    the manifest again there, so neither drops the other's entry (a read before training lost the second)."""
    import threading

    fcntl = pytest.importorskip("fcntl")  # the lock is flock; where there is none, prepares are not serialised

    from autoresearch_nb.harness import tokenizer as module
    from autoresearch_nb.harness.tokenizer import manifest_path, prepare_tokenizer, trusted_hashes

    corpus = small_corpus(tmp_path)
    trained = threading.Event()
    real_train = BPETokenizer.train

    def train_then_signal(*args, **kwargs):  # the real training; the event only says it finished
        tok = real_train(*args, **kwargs)
        trained.set()
        return tok

    monkeypatch.setattr(module.BPETokenizer, "train", staticmethod(train_then_signal))
    manifest = manifest_path(corpus)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    lock = open(manifest.with_name(manifest.name + ".lock"), "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)  # "the other session" holds the lock
    worker = threading.Thread(target=prepare_tokenizer, args=(corpus, "bpe-300"), daemon=True)
    try:
        worker.start()
        assert trained.wait(120)
        # the other session records its tokenizer while this one waits for the lock
        manifest.write_text(json.dumps({"bpe-999-other.json": "ab" * 32}))
        assert worker.is_alive()  # blocked on the lock, not writing over the other session's entry
    finally:
        lock.close()
    worker.join(120)
    assert set(trusted_hashes(corpus)) == {"bpe-999-other.json", module.tokenizer_path(corpus, "bpe-300").name}
