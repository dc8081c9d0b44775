"""The ground-truth metric: bits per byte on a fixed prefix of the validation split.

The harness, not the model, computes the cross-entropy from the model's logits, and divides by the bytes the
targets stand for, so a change of tokenizer or of loss code in train.py cannot change what is measured.

    >>> bpb = evaluate_bpb(model, corpus, tokenizer)    # model(x) -> logits (B, T, vocab)
"""
from __future__ import annotations

import contextlib
import math

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


@torch.no_grad()
def evaluate_bpb(model, corpus: Corpus | None = None, tokenizer=None, *, data: bytes | None = None,
                 seq_len: int | None = None, batch_size: int | None = None, device=None,
                 dtype: torch.dtype | None = None) -> float:
    """Bits per byte of ``model`` on ``data`` (default: the corpus's fixed validation bytes).

    ``model(x)`` takes int64 ids (B, T) and returns logits (B, T, vocab). ``dtype`` turns on autocast for the
    forward pass (the loss is always computed in float32)."""
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
        for i in range(0, len(x_all), batch_size):
            x, y = x_all[i:i + batch_size].to(device), y_all[i:i + batch_size]
            with autocast:
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.to(device).reshape(-1),
                                   ignore_index=-1, reduction="sum")
            nats += float(loss)
            valid = y[y >= 0]
            nbytes += float(token_bytes[valid].sum())
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return nats / (math.log(2) * nbytes)
