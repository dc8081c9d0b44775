"""The verifier's proof that a model predicts each token from the tokens before it alone, on the rows it scores.

A model that sees its targets scores far below any honest one: ``is_causal=False`` in train.py's attention (each
position then attends to its own target) or logits copied from the next input token. The bits-per-byte number
cannot tell; only the model's behaviour can. So every batch the verifier scores is run a second time, changed:

* **causal**: in most rows, every token after a cut point is replaced by the tokens of another scored row (real
  text, not noise a graph could recognise). Each row has its own cut, drawn from the operating system's random
  source when the verifier runs, so the run cannot know it. The log-probabilities the model gives up to and at the
  cut must not move.
* **rows apart**: a quarter of the rows (at least one) are left as they are. Since other rows of the batch did
  change, every log-probability of those rows must stay put: a model that mixes the rows of a batch is refused
  (the harness also never batches neighbouring rows together, :func:`~autoresearch_nb.harness.evaluate.batch_rows`:
  a row's last target is the next row's first input).
* **no memory**: the model's parameters and buffers must be exactly what was loaded after every call, so
  nothing one call saw reaches the next (a graph may hold in-place writes to its own buffers).

The first run of each batch is the scoring run itself (:func:`~autoresearch_nb.harness.evaluate.evaluate_bpb`'s
``check``), so the probe checks the very logits that are scored, not a look-alike call.

What it guarantees: at every checked position, replacing what follows moved no log-probability by more than
:data:`TOLERANCE` nats, so a leak there can have lowered that token's loss by at most that much. Every scored row
is checked once, three in four for causality (a cut each), the rest for rows apart; the cost is one more
forward pass per batch, about the evaluation's own time again (the number is in ``benchmarks/verify_cost.py``). A
leak confined to a few positions per row is caught with the chance that a cut lands on it (one position in
``seq_len`` per row, a chance that adds up over the rows), and can gain at most what those positions are worth.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# Largest change of a checked log-probability (nats) that still counts as "did not move". On a CPU in float32 a
# causal model's prefix log-probabilities are bit-identical when the suffix changes (0.0 measured); bfloat16
# autocast leaves more room for kernels that pick another reduction order.
TOLERANCE = {None: 1e-4, torch.bfloat16: 1e-2}
INTACT_SHARE = 4  # one row in this many (at least one) is left unchanged: the rows-apart check


class Leak(Exception):
    """The model can see what it is asked to predict: the reason, in words, goes to the row."""


def secret_generator() -> torch.Generator:
    """A generator seeded from the operating system's random source: cut points the run cannot predict."""
    g = torch.Generator()
    g.manual_seed(int.from_bytes(os.urandom(8), "little") & (2**63 - 1))
    return g


class Probe:
    """``probe(x, logits)`` after each scored batch (pass it as ``evaluate_bpb(..., check=probe)``); raises
    :class:`Leak`. ``forward`` is the same callable the evaluation scores with."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], dtype: Any = None,
                 generator: torch.Generator | None = None, state: torch.nn.Module | None = None) -> None:
        self.forward = forward
        self.tolerance = TOLERANCE.get(dtype, TOLERANCE[torch.bfloat16])
        self.generator = generator or secret_generator()
        self.state = Snapshot(state) if state is not None else None
        self.rows = 0            # rows checked
        self.positions = 0       # (row, position) pairs checked
        self.worst = 0.0         # the largest change seen at a checked position, in nats

    def __call__(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        if self.state is not None:
            self.state.check()
        n, length = x.shape
        if length < 2:
            return
        g = self.generator
        cuts = torch.randint(0, length - 1, (n,), generator=g)  # tokens after the cut change
        after = torch.arange(length)[None, :] > cuts[:, None]
        intact = torch.zeros(n, dtype=torch.bool)
        if n >= 2:
            intact[torch.randperm(n, generator=g)[:max(1, n // INTACT_SHARE)]] = True
            shift = int(torch.randint(1, n, (1,), generator=g))
            source = x.roll(shift, dims=0)            # another row's text at the same positions
        else:
            shift = int(torch.randint(1, length, (1,), generator=g))
            source = x.roll(shift, dims=1)            # one row: its own text, moved
        after &= ~intact[:, None]
        changed = torch.where(after.to(x.device), source, x)
        again = self.forward(changed)
        if self.state is not None:
            self.state.check()
        before = F.log_softmax(logits.float(), dim=-1)
        moved = (F.log_softmax(again.float(), dim=-1) - before).abs().amax(dim=-1).cpu()
        moved = torch.nan_to_num(moved, nan=float("inf"))
        checked = ~after
        moved[~checked] = 0.0
        self.rows += n
        self.positions += int(checked.sum())
        worst = float(moved.max())
        self.worst = max(self.worst, worst)
        if worst <= self.tolerance:
            return
        # Rows left intact moved: the model mixes rows (which also moves the changed rows, so this comes first).
        mixed = moved.masked_fill(~intact[:, None], 0.0)
        if float(mixed.max()) > self.tolerance:
            row, position = divmod(int(mixed.argmax()), length)
            raise Leak(f"rows are mixed: the prediction at position {position} of a scored row changes (by "
                       f"{float(mixed.max()):.3g} nats) when other rows of its batch change (or the model is not "
                       "deterministic)")
        row, position = divmod(int(moved.argmax()), length)
        raise Leak(f"not causal: the prediction at position {position} changes (by {worst:.3g} nats) when tokens "
                   f"after it change (the tokens after position {int(cuts[row])} of that row were replaced; a "
                   "causal model's predictions up to there cannot move)")

    def facts(self) -> dict[str, Any]:
        """What was checked, for the verifier's summary."""
        return {"causal_rows": self.rows, "causal_positions": self.positions,
                "causal_worst": float(f"{self.worst:.3g}")}


class Snapshot:
    """The parameters, buffers and tensor attributes of a module as loaded; :meth:`check` raises :class:`Leak`
    when any of them changed (the model wrote to itself: state that can carry one call's tokens to the next)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.saved = {name: t.detach().clone() for name, t in tensors(module).items()}

    def check(self) -> None:
        now = tensors(self.module)
        for name, saved in self.saved.items():
            t = now.get(name)
            if t is None or t.shape != saved.shape or not torch.equal(t.detach(), saved):
                raise Leak(f"the model changes its own state while it is scored ({name!r}): state can carry "
                           "the tokens of one call to the next, so the exported forward pass must not write "
                           "to its parameters or buffers")


def tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a module holds: parameters, buffers (persistent or not) and plain tensor attributes."""
    found: dict[str, torch.Tensor] = {}
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for key, value in vars(sub).items():
            if isinstance(value, torch.Tensor):
                found[f"{prefix}.{key}" if prefix else key] = value
        for key, value in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
            found[f"{prefix}.{key}" if prefix else key] = value
    return found
