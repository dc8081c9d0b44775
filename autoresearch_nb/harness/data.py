"""Token streams and batches: random training windows, and the fixed validation rows evaluate_bpb scores.

    >>> batches = Batches(corpus, tokenizer, batch_size=32, seq_len=256, device="cpu", seed=42)
    >>> x, y = next(batches)              # int64 (32, 256) each; y is x shifted by one token
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from .corpus import Corpus
from .export import CLOCK
from .shards import Shards, tokenize_split


def token_stream(corpus: Corpus, tokenizer, split: str) -> Shards:
    """The split as token ids. Bytes need no work (the split file itself, memory-mapped); other tokenizers are
    encoded once, in parallel, into shards cached under ``tokens/`` (see :mod:`.shards`)."""
    if tokenizer.name == "byte":
        return Shards(corpus.path / f"{split}.bin", (corpus.split_bytes(split),))
    return tokenize_split(corpus, tokenizer, split)


class Batches:
    """Endless random windows of ``seq_len + 1`` tokens from the train split, drawn by a seeded generator so
    a run's data order follows its seed."""

    def __init__(self, corpus: Corpus, tokenizer, batch_size: int, seq_len: int, device, seed: int,
                 split: str = "train"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {split!r}")  # never the holdout
        self.tokens = token_stream(corpus, tokenizer, split)
        if max((len(a) for a in self.tokens.arrays), default=0) <= seq_len + 1:
            raise ValueError(f"the {split} split has {len(self.tokens)} tokens, fewer than seq_len + 1")
        self.batch_size, self.seq_len = batch_size, seq_len
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.drawn, self._warned = 0, False
        # the training facts the verifier trusts are the harness's (harness.export), whatever split is drawn
        CLOCK.start(tokenizer.name, len(self.tokens) if split == "train" else None,
                    int(corpus.meta.get("train_bytes") or 0) or None)
        if split == "train":
            # the run's first line names the data (on CUDA a prepared climbmix/tinystories beats stdlib)
            print(f"data: {corpus.name} ({corpus.fingerprint}), {len(self.tokens):,} train tokens "
                  f"({tokenizer.name}) in {corpus.path}", flush=True)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        CLOCK.tick(self.batch_size * self.seq_len)
        rows = torch.from_numpy(self.tokens.windows(self.rng, self.batch_size, self.seq_len + 1))
        self.drawn += self.batch_size * self.seq_len
        if not self._warned and self.drawn > len(self.tokens):
            self._warned = True  # said once, on stderr, so the protocol on stdout is untouched
            print(f"\nwarning: this run has now drawn more tokens than the training split holds "
                  f"({len(self.tokens):,}): it repeats data from here on; prepare a bigger corpus "
                  f"(autoresearch-nb prepare --dataset tinystories|climbmix|FOLDER)", file=sys.stderr, flush=True)
        if self.device.type == "cuda":
            rows = rows.pin_memory().to(self.device, non_blocking=True)
        else:
            rows = rows.to(self.device)
        return rows[:, :-1], rows[:, 1:]


def val_rows(data: bytes, tokenizer, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` tokenized and cut into rows of ``seq_len`` inputs and targets, each row overlapping the next by
    one token so every token after the first is a target once. The last row is padded (target -1, ignored)."""
    ids = np.asarray(tokenizer.encode(data), dtype=np.int64)
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise ValueError("need at least two tokens of validation data")
    n_rows = -(-n_targets // seq_len)
    padded = np.full(n_rows * seq_len + 1, -1, dtype=np.int64)
    padded[: len(ids)] = ids
    starts = np.arange(n_rows)[:, None] * seq_len + np.arange(seq_len + 1)
    rows = torch.from_numpy(padded[starts])
    x, y = rows[:, :-1].clone(), rows[:, 1:].clone()
    x[x < 0] = 0
    return x, y
