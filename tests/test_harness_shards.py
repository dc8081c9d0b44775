# Run: python -m pytest tests/test_harness_shards.py -q
"""Token shards: the same ids as one whole encode, written by worker processes, resumable, read by memory map."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from autoresearch_nb.harness.corpus import write_corpus
from autoresearch_nb.harness.shards import chunk_bounds, token_dtype, tokenize_split
from autoresearch_nb.harness.tokenizer import get_tokenizer


def corpus(tmp_path):
    train = [(f"t{i:03d}", f"document {i} says {'word ' * (i % 7)}and ends\n".encode() * 20) for i in range(60)]
    return write_corpus(tmp_path, "t", train, [("v", b"validation text\n" * 20)], source="test")


def test_shards_hold_exactly_the_whole_split_encoded_once(tmp_path):
    c = corpus(tmp_path)
    tok = get_tokenizer(c, "bpe-300")
    shards = tokenize_split(c, tok, "train", workers=2, chunk_bytes=4096)
    assert len(shards.arrays) > 3 and all(a.dtype == np.uint16 for a in shards.arrays)
    whole = tok.encode(bytes(c.split_bytes("train")))
    assert np.array_equal(np.concatenate(shards.arrays), whole)
    manifest = json.loads((shards.path / "manifest.json").read_text())
    assert manifest["tokens"] == len(whole) == len(shards)
    for entry, array in zip(manifest["shards"], shards.arrays):
        assert entry["sha256"] == hashlib.sha256(np.asarray(array).tobytes()).hexdigest()


def test_chunks_end_at_document_boundaries_and_cover_the_file(tmp_path):
    c = corpus(tmp_path)
    path = c.path / "train.bin"
    bounds = chunk_bounds(path, 1000)
    data = path.read_bytes()
    assert bounds[0][0] == 0 and bounds[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(data[end - 1:end] == b"\x00" for _, end in bounds[:-1])


def test_an_interrupted_run_keeps_finished_shards(tmp_path, monkeypatch):
    from autoresearch_nb.harness import shards as module
    monkeypatch.setattr(module, "ENCODE_BYTES", 700)  # several encode pieces per shard, in this process
    c = corpus(tmp_path)
    tok = get_tokenizer(c, "bpe-300")
    first = tokenize_split(c, tok, "train", workers=1, chunk_bytes=4096)
    files = sorted(first.path.glob("shard_*.bin"))
    (first.path / "manifest.json").unlink()       # as if killed before the end
    files[1].unlink()
    files[0].write_bytes(files[0].read_bytes())   # same content, new inode: a rewrite would change mtime again
    kept = files[0].stat().st_mtime_ns
    again = tokenize_split(c, tok, "train", workers=1, chunk_bytes=4096)
    assert files[0].stat().st_mtime_ns == kept and files[1].exists()
    assert np.array_equal(np.concatenate(again.arrays), tok.encode(bytes(c.split_bytes("train"))))


def test_windows_follow_the_seed_and_stay_inside_one_shard(tmp_path):
    c = corpus(tmp_path)
    tok = get_tokenizer(c, "bpe-300")
    shards = tokenize_split(c, tok, "train", workers=1, chunk_bytes=4096)
    a = shards.windows(np.random.default_rng(5), 64, 33)
    b = shards.windows(np.random.default_rng(5), 64, 33)
    assert a.shape == (64, 33) and np.array_equal(a, b)
    texts = [bytes(np.asarray(s)).hex() for s in shards.arrays]
    for row in a:
        piece = row.astype(np.uint16).tobytes().hex()
        assert any(piece in t for t in texts)


def test_token_width_follows_the_vocabulary():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
