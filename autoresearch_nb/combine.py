"""Beyond one greedy chain: after a stretch without a keep, try what the evidence points to.

A **near-miss** is a discarded experiment whose mean beat its parent's (the best it was measured against), but
not by enough to pass the keep rule: a change that probably helps a little, or was unlucky. One near-miss alone
is within the noise; several small gains together may not be, and a near-miss made on an older best has never
been tried on the current one. So after ``combine_after`` decided experiments without a keep, the loop's next
proposal is, instead of the agent's:

- the **combination** of the best near-misses (up to :data:`MOST`, by their gain): each one's change moved onto
  the current best with the 3-way merge the workers use (:func:`.merge.merge_file`), so constants and code
  changes combine alike, and changes that touch the same lines differently are left out; or
- a **second look** at the best near-miss on the current best, when only one applies and it was made on an
  older best.

Such a proposal is recorded with agent ``combine`` and a description that says which experiments it combines,
their gains and why now. It runs and is judged like any other (the kept history stays one linear chain); the
count of experiments without a keep starts again after it. A combination that equals a file already tried is
not proposed (the next smaller one is, else the agent is asked). Pure: records in, a file out.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .merge import merge_file
from .records import Experiment, Status

AGENT = "combine"  # the agent name of the rows this module proposes
MOST = 3           # near-misses combined at most: more rarely apply together, and blur what helped


@dataclass(frozen=True)
class NearMiss:
    """A discarded change that improved its parent's mean: the experiment, the file it was made on, its gain
    (how much better its mean was, in the metric's units, positive)."""

    exp: Experiment
    base: str
    gain: float


@dataclass(frozen=True)
class Combination:
    """A proposal of this module: the file to run, what it is in words, and the near-misses it carries."""

    description: str
    content: str
    parts: tuple[int, ...]


def near_misses(history: Sequence[Experiment], maximize: bool = False) -> list[NearMiss]:
    """Every near-miss of ``history``, the largest gain first (the earlier on a tie)."""
    kept = {e.sha: e for e in history if e.status == Status.KEEP and e.sha and e.content is not None}
    found = []
    for exp in history:
        parent = kept.get(exp.parent_sha or "")
        if exp.status != Status.DISCARD or exp.content is None or parent is None or exp.metric is None \
                or parent.metric is None:
            continue
        if len(exp.runs) >= 2 and len(set(exp.runs)) == 1:
            continue  # the same number at every seed: it ignores its seed, its "gain" is luck (paired.next_step)
        gain = (exp.metric - parent.metric) if maximize else (parent.metric - exp.metric)
        if gain > 0:
            found.append(NearMiss(exp, parent.content or "", gain))
    return sorted(found, key=lambda n: (-n.gain, n.exp.number))


def drought(history: Sequence[Experiment]) -> int:
    """Decided runs since the last keep or the last combination (the stretch ``combine_after`` counts)."""
    since = max((e.number for e in history if e.status == Status.KEEP or e.agent == AGENT), default=-1)
    return sum(1 for e in history if e.number > since and e.status.ran)


def combination(history: Sequence[Experiment], source: str, *, after: int, maximize: bool = False,
                known: Callable[[str], bool] = lambda content: False, metric: str = "metric") -> Combination | None:
    """The proposal after ``after`` decided runs without a keep (0: never), made on ``source`` (the best's file),
    or None (no stretch yet, no near-miss that applies, or every candidate tried already: a file of ``history``,
    or one ``known`` says runs the same as one)."""
    stretch = drought(history)
    if after <= 0 or stretch < after:
        return None
    current, used = source, []
    for miss in near_misses(history, maximize):
        merged = merge_file(miss.base, current, miss.exp.content or "")
        if merged is None or merged == current:
            continue  # it conflicts with what is combined so far, or the best already has it
        current = merged
        used.append((miss, current))
        if len(used) == MOST:
            break
    why = f"{stretch} experiments without a keep"
    tried = {e.content for e in history}
    for n in range(len(used), 0, -1):  # the most that is new, else fewer
        content = used[n - 1][1]
        if content in tried or known(content):
            continue
        parts = [m for m, _ in used[:n]]
        each = ", ".join(f"#{m.exp.number} ({m.exp.description}: {metric} {'+' if maximize else '-'}{m.gain:.4g})"
                         for m in parts)
        if n == 1:
            text = f"second look at near-miss {each} on the current best, after {why}"
        else:
            text = f"combine near-misses {each}, after {why}"
        return Combination(text, content, tuple(m.exp.number for m in parts))
    return None


__all__ = ["AGENT", "Combination", "MOST", "NearMiss", "combination", "drought", "near_misses"]
