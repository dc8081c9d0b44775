"""The run's side of the text protocol (its rules: :mod:`autoresearch_nb.protocol`): a ``\\r``-redrawn progress
line while training, ``FAIL`` on a diverged run, and the ``---`` summary of ``key: value`` lines the loop reads.

    >>> progress(step=10, fraction=0.5, loss=2.1, lr=1e-3, tok_per_s=12000, mfu=20.0, elapsed=60.0)
    >>> report(model, corpus, tokenizer, training_seconds=120.2, num_steps=900, ...)
"""
from __future__ import annotations

import math
import resource
import sys
import time

import torch

from .. import __version__
from ..protocol import FAIL, format_summary, phase_line
from . import constants as C
from .evaluate import eval_bytes, evaluate_bpb
from .export import CLOCK
from .runtime import budget_clock, device_class, peak_flops, seed

SUMMARY_KEYS = ("val_bpb", "training_seconds", "total_seconds", "peak_memory_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth")


def progress(*, step: int, fraction: float, loss: float, lr: float, tok_per_s: float, mfu: float,
             elapsed: float, stream=None) -> None:
    stream = stream or sys.stdout
    # the same loss in bits per byte of the training split: comparable across tokenizers (early stopping)
    factor = CLOCK.bits_per_byte()
    bpb = f" | train_bpb: {loss * factor:.4f}" if factor and math.isfinite(loss) else ""
    stream.write(f"\rstep {step:05d} ({100 * fraction:.1f}%) | loss: {loss:.4f}{bpb} | lr: {lr:.1e} | "
                 f"tok/s: {tok_per_s:,.0f} | mfu: {mfu:.1f}% | elapsed: {elapsed:.1f}s    ")
    stream.flush()


def diverged(loss: float) -> bool:
    return not math.isfinite(loss) or loss > C.FAIL_LOSS


def fail(reason: str, code: int = 1):
    """Print ``FAIL`` on its own line (what the loop looks for) and exit non-zero."""
    sys.stdout.write("\n")
    print(FAIL)
    print(f"reason: {reason}", flush=True)
    sys.exit(code)


def process_seconds() -> float:
    """Wall seconds since this process started (imports, data preparation and compile included)."""
    try:
        import psutil
        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or restricted: fall back to the harness import time
        return time.time() - _IMPORTED


_IMPORTED = time.time()


def peak_memory_mb(device) -> float:
    """Peak VRAM on CUDA; peak resident memory of the process elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        try:
            return torch.mps.driver_allocated_memory() / 2**20
        except Exception:
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def mfu_percent(flops_per_token: float, tokens: float, seconds: float, device, dtype=None) -> float:
    if seconds <= 0:
        return 0.0
    return 100 * flops_per_token * tokens / seconds / peak_flops(torch.device(device), dtype)


def report(model, corpus, tokenizer, *, training_seconds: float, num_steps: int, total_tokens: int,
           flops_per_token: float, depth: int, device, dtype: torch.dtype | None = None,
           stream=None, **extra) -> dict:
    """Score the model on the fixed validation bytes and print the summary block; return it as a dict.
    A non-finite val_bpb prints ``FAIL`` and exits non-zero."""
    stream = stream or sys.stdout
    stream.write("\n" + phase_line("evaluate") + "\n")  # the loop shows (and times) the evaluation; the newline
    stream.flush()                                       # ends the last progress redraw
    device = torch.device(device)
    bpb = evaluate_bpb(model, corpus, tokenizer, device=device, dtype=dtype)
    if not math.isfinite(bpb):
        fail(f"val_bpb is {bpb}")
    num_params = sum(p.numel() for p in model.parameters())
    summary = {
        "val_bpb": round(bpb, 6),
        "training_seconds": round(training_seconds, 1),
        "budget_clock": budget_clock(device),
        "total_seconds": round(process_seconds(), 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "mfu_percent": round(mfu_percent(flops_per_token, total_tokens, training_seconds, device, dtype), 2),
        "total_tokens_M": round(total_tokens / 1e6, 3),
        "num_steps": int(num_steps),
        "num_params_M": round(num_params / 1e6, 3),
        "depth": int(depth),
        "seed": seed(),
        "corpus": corpus.fingerprint,
        "tokenizer": tokenizer.name,
        "device": f"{device.type} ({device_class(device)} config)",
        "eval_bytes": len(eval_bytes(corpus, device)),
        # passes over the training split (all tokens drawn); above 1 the budget repeats data
        **({"data_passes": round(CLOCK.tokens / CLOCK.train_tokens, 2)} if CLOCK.train_tokens else {}),
        # provenance: what this number came from (the loop keeps these as columns of the row)
        "torch": torch.__version__,
        "harness": f"autoresearch_nb {__version__}",
        **extra,
    }
    stream.write(format_summary(summary))
    stream.flush()
    return summary
