# Run: python -m pytest tests/test_harness_evaluate.py -q
from __future__ import annotations

import math
import os

import torch

from autoresearch_nb.harness.data import val_rows
from autoresearch_nb.harness.evaluate import eval_bytes, evaluate_bpb
from autoresearch_nb.harness.tokenizer import BPETokenizer, ByteTokenizer


class Uniform(torch.nn.Module):
    """Equal logits for every symbol: exactly log2(vocab) bits per token."""

    def __init__(self, vocab=256):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab) + self.dummy


class Oracle(Uniform):
    """Knows the stream is one repeated byte."""

    def __init__(self, byte):
        super().__init__()
        self.byte = byte

    def forward(self, x):
        logits = torch.full((*x.shape, 256), -50.0)
        logits[..., self.byte] = 50.0
        return logits + self.dummy


def test_uniform_random_bytes_score_8_bits():
    data = os.urandom(20_000)
    assert abs(evaluate_bpb(Uniform(), data=data, seq_len=64, device="cpu") - 8.0) < 1e-4


def test_constant_stream_scores_near_zero_for_an_oracle():
    assert evaluate_bpb(Oracle(ord("a")), data=b"a" * 5000, seq_len=64, device="cpu") < 1e-6


def test_bpe_is_scored_per_byte_not_per_token():
    tok = BPETokenizer.train([b"ab" * 500, b"abc " * 300], 270, "bpe-270")
    data = b"abab abc abc ab" * 100
    n_tokens = len(tok.encode(data))
    expected = math.log2(tok.vocab_size) * (n_tokens - 1) / (len(data) - tok.token_bytes[tok.encode(data)[0]])
    got = evaluate_bpb(Uniform(tok.vocab_size), tokenizer=tok, data=data, seq_len=16, device="cpu")
    assert abs(got - expected) < 1e-4 and got < 8


def test_val_rows_score_every_target_once():
    data = bytes(range(200)) * 3
    x, y = val_rows(data, ByteTokenizer(), 64)
    valid = y[y >= 0]
    assert len(valid) == len(data) - 1
    assert valid.tolist() == list(data[1:])
    assert torch.equal(x[0, 1:], y[0, :-1])


def test_eval_bytes_are_a_fixed_spread_sample(tmp_path):
    from autoresearch_nb.harness.corpus import write_corpus
    val = [(f"v{i}", bytes([97 + i % 26]) * 100_000) for i in range(20)]
    corpus = write_corpus(tmp_path, "t", [("t", b"x" * 1000)], val, source="test")
    sample = eval_bytes(corpus, torch.device("cpu"))
    assert sample == eval_bytes(corpus, torch.device("cpu"))
    assert len(set(sample) - {0}) > 5  # drawn from across the split, not only its first document
