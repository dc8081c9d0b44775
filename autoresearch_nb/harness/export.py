"""The trained model, saved where the loop's verifier can score it without train.py's code.

``H.export(model)`` at the end of training writes, into the directory the loop names in
``AUTORESEARCH_EXPORT``:

* ``model.pt2``: ``torch.export`` of the forward pass, token ids ``(EXPORT_BATCH, seq_len)`` -> logits, with the
  harness's sequence length (weights and graph; no Python code of the run is needed to run it);
* ``facts.json``: the training facts as the harness counted them: seconds (on the budget clock, ``H.now``) and
  tokens from the first batch ``H.Batches`` handed out to the export, the clock, the device, the tokenizer,
  torch's version.

Run by hand (no ``AUTORESEARCH_EXPORT``), it does nothing. :mod:`autoresearch_nb.verifier` reads both.

    >>> H.export(model)      # train.py, after the training loop, before H.report(...)    # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import constants as C
from .runtime import budget_clock, device_class, env, now

ENV_EXPORT = "AUTORESEARCH_EXPORT"   # the folder the loop gives a run for its exported model
ARTIFACT = "model.pt2"
FACTS = "facts.json"
EXPORT_BATCH = 32                    # rows per call of the exported forward pass (the verifier pads the last)


class _Clock:
    """Seconds (on the budget clock) and tokens from the first training batch on, counted by
    :class:`~.data.Batches`."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.tokens = 0
        self.tokenizer: str | None = None
        self.train_tokens: int | None = None  # the training split's size, for the passes over it
        self.train_bytes: int | None = None

    def start(self, tokenizer: str, train_tokens: int | None = None, train_bytes: int | None = None) -> None:
        """A training stream exists (``Batches``): remember its tokenizer, the one the verifier must use."""
        self.tokenizer = tokenizer
        if train_tokens is not None:  # a stream of another split (val) keeps the train split's size
            self.train_tokens, self.train_bytes = train_tokens, train_bytes

    def bits_per_byte(self) -> float | None:
        """Nats per token -> bits per byte on the training split (tokens per byte / ln 2), so training losses of
        different tokenizers compare (early stopping's unit); None before a training stream exists."""
        if not self.train_tokens or not self.train_bytes:
            return None
        return self.train_tokens / self.train_bytes / math.log(2)

    def tick(self, tokens: int) -> None:
        if self.first is None:
            self.first = now()
        self.tokens += int(tokens)

    def seconds(self) -> float | None:
        return None if self.first is None else now() - self.first


CLOCK = _Clock()


def export(model: torch.nn.Module, seq_len: int | None = None, dtype: torch.dtype | None = None) -> Path | None:
    """Export ``model`` (``model(ids) -> logits``) for the loop's verifier; returns the artifact's path, or None
    when not run by the loop. Training time stops counting here. ``dtype``: the autocast precision the run
    evaluates with (None or ``torch.bfloat16``), so the verifier scores the model the way the run did."""
    seconds, tokens = CLOCK.seconds(), CLOCK.tokens
    folder = env(ENV_EXPORT)
    if not folder:
        return None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    length = int(seq_len or C.SEQ_LEN[device_class(device)])
    example = torch.zeros(EXPORT_BATCH, length, dtype=torch.long, device=device)
    facts = {"training_seconds": seconds, "clock": budget_clock(device), "tokens": tokens, "tokenizer": CLOCK.tokenizer, "seq_len": length,
             "batch": EXPORT_BATCH, "device": str(device), "torch": torch.__version__,
             "autocast": "bfloat16" if dtype == torch.bfloat16 else None}
    (out / ARTIFACT).unlink(missing_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,), strict=False)
        torch.export.save(program, str(out / ARTIFACT))
    except Exception as e:  # the run still reports; the verifier turns this into the row's reason
        facts["export_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:600]}"
        print(f"H.export: the model could not be exported: {facts['export_error']}", flush=True)
    finally:
        model.train(was_training)
    (out / FACTS).write_text(json.dumps(facts))
    return None if "export_error" in facts else out / ARTIFACT


__all__ = ["export", "ENV_EXPORT", "ARTIFACT", "FACTS", "EXPORT_BATCH", "CLOCK"]
