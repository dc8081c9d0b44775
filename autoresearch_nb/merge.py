"""A 3-way merge of one file's text, for re-applying a change made on one version of the file onto another.

Used where an experiment's change must move to a newer best: the lookahead and the workers (a parent that is no
longer the head) and the near-miss combinations (:mod:`.combine`). Pure, stdlib only.
"""
from __future__ import annotations

import difflib
from collections import Counter


def _hunks(base: list[str], other: list[str]) -> list[tuple[int, int, list[str]]]:
    ops = difflib.SequenceMatcher(None, base, other, autojunk=False).get_opcodes()
    return [(i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def _apply(base: list[str], lo: int, hi: int, hunks: list[tuple[int, int, list[str]]]) -> list[str]:
    """``base[lo:hi]`` with ``hunks`` (sorted, inside the range) applied."""
    out, pos = [], lo
    for i1, i2, lines in hunks:
        out.extend(base[pos:i1])
        out.extend(lines)
        pos = i2
    out.extend(base[pos:hi])
    return out


def _contains(region: list[str], bigger: list[str], smaller: list[str]) -> bool:
    """True when every line ``smaller`` adds to ``region`` is added by ``bigger`` too, and every line it
    removes is removed by ``bigger`` too: ``smaller``'s change is part of ``bigger``'s."""
    def change(side: list[str]) -> tuple[Counter, Counter]:
        added, removed = Counter(), Counter()
        for i1, i2, lines in _hunks(region, side):
            removed.update(region[i1:i2])
            added.update(lines)
        return added, removed
    (add_b, rem_b), (add_s, rem_s) = change(bigger), change(smaller)
    return not (add_s - add_b) and not (rem_s - rem_b)


def merge_file(base: str, ours: str, theirs: str) -> str | None:
    """3-way merge of one file's text; None when both sides change the same lines differently.

    Unlike ``git merge-file``, changes to adjacent lines (two hyperparameters on consecutive lines, the usual
    case here) do not conflict: only overlapping line ranges do. Where the two sides' changes overlap, the
    result is either side's text of that range when the other side's change is part of it (the same edit, or
    one edit inside a larger one); otherwise it is a conflict.

    >>> merge_file("A = 0\nB = 0\n", "A = 1\nB = 1\n", "A = 1\nB = 0\n")
    'A = 1\nB = 1\n'
    """
    b, o, t = base.splitlines(keepends=True), ours.splitlines(keepends=True), theirs.splitlines(keepends=True)
    hunks = sorted([(h, 0) for h in _hunks(b, o)] + [(h, 1) for h in _hunks(b, t)], key=lambda x: (x[0][0], x[0][1]))
    # Clusters of overlapping hunks (or insertions at one place); each side's hunks never overlap each other.
    clusters: list[list[tuple[tuple[int, int, list[str]], int]]] = []
    for hunk, side in hunks:
        if clusters:
            last = clusters[-1]
            hi = max(h[1] for h, _ in last)
            p1, p2 = last[-1][0][0], last[-1][0][1]
            if hunk[0] < hi or (hunk[0] == p1 == p2):
                last.append((hunk, side))
                continue
        clusters.append([(hunk, side)])
    out, pos = [], 0
    for cluster in clusters:
        lo, hi = min(h[0] for h, _ in cluster), max(h[1] for h, _ in cluster)
        mine, other = (_apply(b, lo, hi, [h for h, s in cluster if s == side]) for side in (0, 1))
        if len({s for _, s in cluster}) == 2 and mine != other:
            if _contains(b[lo:hi], mine, other):
                pass
            elif _contains(b[lo:hi], other, mine):
                mine = other
            else:
                return None
        out.extend(b[pos:lo])
        out.extend(mine if any(s == 0 for _, s in cluster) else other)
        pos = hi
    out.extend(b[pos:])
    return "".join(out)


__all__ = ["merge_file"]
