# Run: python -m pytest tests/test_harness_data.py -q
from __future__ import annotations

import numpy as np
import torch

from autoresearch_nb.harness.corpus import write_corpus
from autoresearch_nb.harness.data import Batches, token_stream
from autoresearch_nb.harness.tokenizer import ByteTokenizer, get_tokenizer


def corpus(tmp_path):
    train = [(f"t{i}", f"line {i} of the training text\n".encode() * 30) for i in range(10)]
    return write_corpus(tmp_path, "t", train, [("v", b"validation text\n" * 20)], source="test")


def test_batches_are_shifted_windows_that_follow_the_seed(tmp_path):
    c = corpus(tmp_path)
    x, y = next(Batches(c, ByteTokenizer(), 4, 32, "cpu", seed=1))
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = next(Batches(c, ByteTokenizer(), 4, 32, "cpu", seed=1))
    x3, _ = next(Batches(c, ByteTokenizer(), 4, 32, "cpu", seed=2))
    assert torch.equal(x, x2) and not torch.equal(x, x3)


def test_bpe_streams_are_cached_by_fingerprint(tmp_path):
    c = corpus(tmp_path)
    tok = get_tokenizer(c, "bpe-300")
    shards = token_stream(c, tok, "train")
    assert (c.path / "tokens" / f"bpe-300-{c.fingerprint}" / "train" / "manifest.json").exists()
    assert tok.decode(np.concatenate(shards.arrays)) == bytes(c.split_bytes("train"))


def test_a_second_pass_over_the_train_split_is_announced_once(tmp_path, capsys):
    c = corpus(tmp_path)
    batches = Batches(c, ByteTokenizer(), 4, 32, "cpu", seed=1)
    steps = len(c.split_bytes("train")) // (4 * 32)
    for _ in range(steps):
        next(batches)
    assert "warning" not in capsys.readouterr().err
    for _ in range(2 * steps + 2):
        next(batches)
    err = capsys.readouterr().err
    assert err.count("more tokens than the training split holds") == 1
