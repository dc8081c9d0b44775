"""The ground-truth metric: bits per byte on a fixed prefix of the validation split.

The harness, not the model, computes the cross-entropy from the model's logits, and divides by the bytes the
targets stand for, so a change of tokenizer or of loss code in train.py cannot change what is measured.

    >>> bpb = evaluate_bpb(model, corpus, tokenizer)    # model(x) -> logits (B, T, vocab)
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F

from . import constants as C
from .corpus import Corpus
from .data import val_rows
from .runtime import device_class

EVAL_BATCH_TOKENS = {"cpu": 2**14, "mps": 2**15, "cuda": 2**16}


def eval_bytes(corpus: Corpus, dev=None) -> bytes:
    """The validation bytes that are scored: ``EVAL_CHUNKS`` evenly spaced slices of the val split, together
    ``EVAL_BYTES[class]`` long (the whole split if it is shorter), joined by the document separator."""
    return spaced_slices(corpus.split_bytes("val"), C.EVAL_BYTES[device_class(dev)])


def spaced_slices(split, total: int) -> bytes:
    """``EVAL_CHUNKS`` evenly spaced slices of ``split``, together ``total`` bytes (all of it if shorter),
    joined by the document separator: the scored bytes of val here, of the holdout in the verifier."""
    if len(split) <= total:
        return bytes(split)
    size = total // C.EVAL_CHUNKS
    stride = (len(split) - size) // (C.EVAL_CHUNKS - 1)
    return C.DOC_SEPARATOR.join(bytes(split[i * stride: i * stride + size]) for i in range(C.EVAL_CHUNKS))


def batch_rows(n_rows: int, batch_size: int) -> list[torch.Tensor]:
    """The row indices of each evaluation batch, interleaved so that no batch holds two neighbouring rows: a
    row's last target is the next row's first input, which a model that mixed the rows of a batch could read.
    At least two batches whenever there are two rows.

        >>> [b.tolist() for b in batch_rows(5, 4)]
        [[0, 2, 4], [1, 3]]
    """
    if n_rows <= 1:
        return [torch.arange(n_rows)]
    n_batches = max(2, -(-n_rows // batch_size))
    return [torch.arange(b, n_rows, n_batches) for b in range(n_batches)]


@torch.no_grad()
def evaluate_bpb(model, corpus: Corpus | None = None, tokenizer=None, *, data: bytes | None = None,
                 seq_len: int | None = None, batch_size: int | None = None, device=None,
                 dtype: torch.dtype | None = None,
                 check: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> float:
    """Bits per byte of ``model`` on ``data`` (default: the corpus's fixed validation bytes).

    ``model(x)`` takes int64 ids (B, T) and returns logits (B, T, vocab). ``dtype`` turns on autocast for the
    forward pass (the loss is always computed in float32). ``check(x, logits)``, if given, sees every scored
    batch and the very logits that are scored, under the same autocast, and may raise (the verifier's
    causality probe, :mod:`autoresearch_nb.causal`)."""
    from .tokenizer import ByteTokenizer
    tokenizer = tokenizer or ByteTokenizer()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    cls = device_class(device)
    seq_len = seq_len or C.SEQ_LEN[cls]
    if data is None:
        if corpus is None:
            raise ValueError("give a corpus or the data to score")
        data = eval_bytes(corpus, device)
    x_all, y_all = val_rows(data, tokenizer, seq_len)
    token_bytes = torch.as_tensor(tokenizer.token_bytes, dtype=torch.float64)
    batch_size = batch_size or max(1, EVAL_BATCH_TOKENS[cls] // seq_len)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    nats, nbytes = 0.0, 0.0
    try:
        for rows in batch_rows(len(x_all), batch_size):
            x, y = x_all[rows].to(device), y_all[rows]
            with autocast:
                logits = model(x)
                if check is not None:
                    check(x, logits)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.to(device).reshape(-1),
                                   ignore_index=-1, reduction="sum")
            nats += float(loss)
            valid = y[y >= 0]
            nbytes += float(token_bytes[valid].sum())
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return nats / (math.log(2) * nbytes)
