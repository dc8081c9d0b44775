"""The fixed harness that train.py imports: corpus, tokenizer, batches, the ``evaluate_bpb`` metric and the
run's text protocol. The agent edits train.py; nobody edits this package during a run.

    >>> from autoresearch_nb import harness as H
    >>> corpus = H.load_corpus(); tok = H.get_tokenizer(corpus)
    >>> batches = H.Batches(corpus, tok, 32, H.seq_len(), "cpu", H.seed())
"""
from __future__ import annotations

from . import constants
from .constants import FAIL_LOSS
from .corpus import Corpus, CorpusError, load_corpus, prepare_stdlib
from .data import Batches, token_stream
from .evaluate import eval_bytes, evaluate_bpb
from .export import export
from ..protocol import parse_summary
from .report import SUMMARY_KEYS, diverged, fail, peak_memory_mb, progress, report
from .runtime import (budget_clock, device, device_class, fast_bf16, now, peak_flops, seed, seq_len, threads,
                      time_budget, work, work_rate)
from .tokenizer import get_tokenizer

__all__ = [
    "Batches", "Corpus", "CorpusError", "FAIL_LOSS", "SUMMARY_KEYS", "budget_clock", "constants", "device",
    "device_class", "now", "threads", "work", "work_rate",
    "diverged", "eval_bytes", "evaluate_bpb", "export", "fail", "fast_bf16", "get_tokenizer", "load_corpus",
    "parse_summary", "peak_flops", "peak_memory_mb", "prepare_stdlib", "progress", "report", "seed", "seq_len",
    "time_budget", "token_stream",
]
