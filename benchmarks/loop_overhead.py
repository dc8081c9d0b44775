"""The loop's own overhead per experiment: everything but the subprocess (git, store, parsing, events).

    python benchmarks/loop_overhead.py [--experiments 30]
    python benchmarks/loop_overhead.py --growth [--at 50,500,2000]

The default mode runs a trivial target (prints a summary and exits) through Loop.step() with an in-process
agent that changes one constant each time, alternately better and worse (so both keep and discard paths are
measured), and prints the median and p90 overhead and the share of wall time spent inside the subprocess.
Goal: median <= 0.3 s on a 2-core machine.

``--growth`` measures whether that cost stays flat as a run grows: an instant target (``cat score.txt``: the
editable file *is* the summary), alternately better and worse proposals, the plain rule, and the gap between
one run's end (RUN_FINISHED) and the next run's start (RUN_STARTED), as the median over 21 experiments around
each of the given counts, printed side by side with the ratio of the last to the first. Goal: within 1.5x.
Beside it, the loop process's own CPU time per experiment (``time.process_time``: git and the target run in
child processes and are not counted), which a shared machine's load disturbs less than wall time.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb import Edit, EventKind, Loop, Proposal  # noqa: E402

TARGET = """\
X = 100
print("step 1 | loss: 1.0")
print("---")
print(f"score: {abs(X - 37)}")
"""


class Walker:
    """Moves X one unit per proposal, toward 37 on even steps and away on odd ones."""

    name = "walker"

    def __init__(self) -> None:
        self.i = 0

    def propose(self, context):
        current = int(context.source.split("X = ")[1].split("\n")[0])
        self.i += 1
        new = current - 1 if self.i % 2 else current + 1 + self.i  # a fresh value each time: no duplicates
        return Proposal(f"X {current} -> {new}", edits=(Edit(f"X = {current}", f"X = {new}"),))


class Instant:
    """Writes the whole summary: every other proposal a little better (kept), the others worse (discarded)."""

    name = "instant"

    def __init__(self) -> None:
        self.i = 0

    def propose(self, context):
        self.i += 1
        value = 1000.0 - self.i * 1e-3 if self.i % 2 else 1e6 + self.i
        return Proposal(f"score {value:g}", content=f"---\nscore: {value:.6f}\n")


def _repo(root: Path, name: str, text: str) -> None:
    for cmd in (["init", "-q"], ["config", "user.email", "b@b"], ["config", "user.name", "b"]):
        subprocess.run(["git", *cmd], cwd=root, check=True)
    (root / name).write_text(text)
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True)


def overhead(experiments: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _repo(root, "train.py", TARGET)
        loop = Loop.open(root, tag="bench", agent=Walker(), metric="score", time_budget_s=5)
        loop.baseline()
        overheads, walls, insides = [], [], []
        for _ in range(experiments):
            t0 = time.perf_counter()
            exp = loop.step()
            wall = time.perf_counter() - t0
            inside = exp.wall_seconds or 0.0
            overheads.append(wall - inside)
            walls.append(wall)
            insides.append(inside)
        statuses = [e.status.value for e in loop.experiments[1:]]
        loop.close()
    overheads.sort()
    print(f"experiments: {len(overheads)} (keep {statuses.count('keep')}, discard {statuses.count('discard')})")
    print(f"overhead per experiment: median {statistics.median(overheads):.3f} s, "
          f"p90 {overheads[int(0.9 * (len(overheads) - 1))]:.3f} s, max {overheads[-1]:.3f} s (goal <= 0.300 s)")
    print(f"subprocess time per experiment: median {statistics.median(insides):.3f} s")
    print(f"share of wall time inside the subprocess: {sum(insides) / sum(walls):.1%}")


def growth(at: list[int]) -> None:
    """The gap between one run's end and the next run's start, around each experiment count in ``at``."""
    finished: dict[int, float] = {}
    started: dict[int, float] = {}
    cpu: dict[int, float] = {}

    def on_event(e) -> None:
        if e.experiment is None:
            return
        if e.kind == EventKind.RUN_FINISHED:
            finished[e.experiment.number] = time.perf_counter()
        elif e.kind == EventKind.RUN_STARTED:
            started[e.experiment.number] = time.perf_counter()
            cpu[e.experiment.number] = time.process_time()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _repo(root, "score.txt", "---\nscore: 1000\n")
        with Loop.open(root, tag="growth", agent=Instant(), metric="score", editable="score.txt",
                       command="cat score.txt", time_budget_s=5, noise_k=0, noise_repeats=1) as loop:
            loop.subscribe(on_event)
            loop.optimize(n=max(at) + 11)
    gaps = {n: started[n] - finished[n - 1] for n in started if n - 1 in finished}
    own = {n: cpu[n] - cpu[n - 1] for n in cpu if n - 1 in cpu}
    print(f"growth: {max(at) + 11} experiments in {time.perf_counter() - t0:.0f} s (instant target, plain rule)")
    for title, values in (("gap between a run's end and the next run's start", gaps),
                          ("the loop process's own CPU time per experiment", own)):
        medians = []
        for n in at:
            window = [values[k] for k in range(n - 10, n + 11) if k in values]
            medians.append(statistics.median(window) if window else float("nan"))
        print(f"{title} (median of 21):")
        print("  " + "   ".join(f"#{n}: {m * 1000:.1f} ms" for n, m in zip(at, medians)))
        print(f"  last / first: {medians[-1] / medians[0]:.2f}x (goal <= 1.5x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=30)
    ap.add_argument("--growth", action="store_true", help="measure the gap around --at experiment counts")
    ap.add_argument("--at", default="50,500,2000", help="experiment counts to measure the gap at")
    args = ap.parse_args()
    if args.growth:
        growth([int(x) for x in args.at.split(",")])
    else:
        overhead(args.experiments)


if __name__ == "__main__":
    main()
