"""One-dial probes: the tuner's first moves, one constant one step from the best, most important dials first.

With a handful of experiments, a model-based sampler has nothing to model yet and its first draws are
random points of a wide space, mostly far from a hand-tuned file and worse. A researcher does the opposite:
move one dial one step, see which way is better, keep going that way while it pays (coordinate search). The
tuner does that first, through the same Optuna study (each probe is an enqueued trial, so TPE learns from
it), then mixes probes into TPE's own proposals (one in four).

* A *step* is one notch in the parameter's own units: ±1 for small ints (``DEPTH 4 -> 3``), one power of two
  (``BATCH_SIZE 16 -> 8``), ×2 or ÷2 for log-scale floats (learning rates), ×1.5 or ÷1.5 for fractions
  (``1 - beta`` for betas), the other values of a choice.
* *Order*: a kept one-dial move is continued first (a line search); then dials by name class (the model-size
  dial, learning rates, batch, widths, schedule, the rest) and file order within a class; for each, both
  directions, the first one picked by the run's seed.
* Everything comes from the history, so a resumed run probes exactly as an uninterrupted one would.

>>> from autoresearch_nb.agents.space import discover
>>> space = discover("LR = 0.01\\nDEPTH = 4\\n")
>>> [(m.name, m.value) for m in moves(space, space.encoded("LR = 0.01\\nDEPTH = 4\\n"), seed=0)][:2]
[('DEPTH', 3), ('DEPTH', 5)]
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .space import Param, Space

# Lower classes are probed first; names are matched as whole underscore-separated words. The schedule's words
# are checked first, so FINAL_LR_FRAC is a schedule constant, not a learning rate.
_SCHEDULE = re.compile(r"(^|_)(WARMUP|WARMDOWN|COOLDOWN|DECAY|FRAC|FRACTION|SCHEDULE)(_|$)")
_CLASSES = (
    re.compile(r"(^|_)(DEPTH|N_LAYERS?|NUM_LAYERS|LAYERS)(_|$)"),                       # the model-size dial
    re.compile(r"(^|_)(LR|LEARNING_RATE)(_|$)"),                                       # learning rates
    re.compile(r"(^|_)(BATCH|BATCH_SIZE|ACCUM|GRAD_ACCUM|TOKENS)(_|$)"),               # batch
    re.compile(r"(^|_)(ASPECT|WIDTH|DIM|HIDDEN|EMBD|N_EMBD|HEAD|HEADS|MLP)(_|$)"),     # widths
)
_BETA = re.compile(r"BETA|MOMENTUM|EMA")


@dataclass(frozen=True)
class Move:
    """One probe: ``name`` set to ``value`` (Optuna units), ``direction`` -1 or +1 (0 for a choice)."""

    name: str
    direction: int
    value: Any


def priority(name: str) -> int:
    """The name's class: 0 the model-size dial, 1 learning rates, 2 batch, 3 widths, 4 schedule, 5 the rest."""
    if _SCHEDULE.search(name):
        return 4
    for i, pattern in enumerate(_CLASSES):
        if pattern.search(name):
            return i
    return 5


def steps(p: Param, x: Any) -> list[tuple[int, Any]]:
    """The one-step neighbours of ``x`` (Optuna units) as ``(direction, value)``, inside the bounds."""
    if p.kind == "choice":
        return [(0, c) for c in p.choices if c != x]
    if p.kind == "pow2":
        raw = [(-1, int(x) - 1), (1, int(x) + 1)]
    elif p.kind == "int":
        if p.log and x > 0:
            raw = [(-1, int(round(x / 2))), (1, int(round(x * 2)))]
        else:
            step = max(1, int(round(abs(x) * 0.25)))
            raw = [(-1, int(x) - step), (1, int(x) + step)]
    elif p.log:
        raw = [(-1, x / 2.0), (1, x * 2.0)]
    elif _BETA.search(p.name) and 0.5 <= x < 1.0:
        gap = 1.0 - x       # what matters is 1 - beta: twice or half the horizon
        raw = [(-1, 1.0 - gap * 2.0), (1, 1.0 - gap / 2.0)]
    elif x > 0:
        raw = [(-1, x / 1.5), (1, x * 1.5)]
    elif x < 0:
        raw = [(-1, x * 1.5), (1, x / 1.5)]
    else:
        raw = [(1, float(p.low) + (float(p.high) - float(p.low)) / 4.0)]
    out = []
    for direction, value in raw:
        if p.kind == "float":
            value = p.encode(p.decode(value))  # the value as it will be written (3 significant digits)
        if p.contains(value) and value != x:
            out.append((direction, value))
    return out


def moves(space: Space, base: dict[str, Any], seed: int = 0, first: tuple[str, int] | None = None) -> list[Move]:
    """Every one-step move from ``base``, in probing order; ``first`` (name, direction) is continued first."""
    order = sorted(range(len(space.params)), key=lambda i: (priority(space.params[i].name), i))
    out: list[Move] = []
    for i in order:
        p = space.params[i]
        if p.name not in base:
            continue
        options = steps(p, base[p.name])
        if len(options) == 2 and options[0][0] != options[1][0] and random.Random(f"{seed}:{p.name}").random() < 0.5:
            options.reverse()
        out.extend(Move(p.name, d, v) for d, v in options)
    if first is not None:
        lead = [m for m in out if (m.name, m.direction) == first and m.direction != 0]
        out = lead + [m for m in out if m not in lead]
    return out


def last_move(kept: Sequence[dict[str, Any]]) -> tuple[str, int] | None:
    """The dial and direction of the latest keep, when it moved exactly one numeric dial from the keep before."""
    if len(kept) < 2:
        return None
    before, after = kept[-2], kept[-1]
    changed = [n for n in after if n in before and after[n] != before[n]]
    if len(changed) != 1:
        return None
    name = changed[0]
    a, b = before[name], after[name]
    if isinstance(a, str) or isinstance(b, str) or isinstance(a, bool) or isinstance(b, bool):
        return None
    return name, (1 if b > a else -1)


__all__ = ["Move", "priority", "steps", "moves", "last_move"]
