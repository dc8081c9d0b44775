# python -m pytest tests/test_parallel.py -q
"""Parallel workers: the local executor and a local Ray instance on a sleep-bound target (the cores are not
the bottleneck), the linear-chain invariant, a worker killed mid-run, and the store's shape."""
from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import git, make_repo

from autoresearch_nb import Edit, EventKind, Loop, Proposal, Status
from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.parallel import merge_file

TARGET = textwrap.dedent("""\
    import os, time
    A = 0
    B = 0
    C = 0
    SLEEP = 0.6
    time.sleep(SLEEP)
    print("step 1 | loss: 1.0")
    print("---")
    print(f"score: {10 - A - B - C}")
    print(f"worker: {os.environ.get('AUTORESEARCH_WORKER')}")
    print(f"threads: {os.environ.get('OMP_NUM_THREADS')}")
""")
PLAIN = dict(metric="score", time_budget_s=5, timeout_s=60, noise_repeats=1, noise_k=0)


FILES = {"train.py": TARGET}


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", FILES)


class Agent:
    """Proposes its edits in order, each only if it applies to the current best."""

    name = "list"

    def __init__(self, items: list[tuple[str, str, str]]) -> None:
        self.items = list(items)
        self.in_flight_seen: list[int] = []

    def propose(self, context):
        self.in_flight_seen.append(len(context.in_flight))
        while self.items:
            desc, search, replace = self.items.pop(0)
            if search in context.source:
                return Proposal(desc, edits=(Edit(search, replace),))
        raise QueueExhausted("done")


def assert_linear_chain(repo: Path, loop: Loop) -> None:
    """Kept commits form one chain on the branch, each measured on exactly its own code."""
    kept = [e for e in loop.experiments if e.status == Status.KEEP]
    for prev, cur in zip(kept, kept[1:]):
        assert cur.parent_sha == (prev.sha), (prev.number, cur.number)
    chain = git(repo, "rev-list", "--first-parent", f"autoresearch/{loop.tag}").split()
    kept_shas = [e.sha for e in kept if e.sha != e.parent_sha]
    assert chain[: len(kept_shas)] == list(reversed(kept_shas))
    for e in kept[1:]:
        assert git(repo, "rev-parse", f"{e.sha}^") == e.parent_sha


def test_two_workers_run_at_once_and_keep_a_linear_chain(repo: Path) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1"), ("C", "C = 0", "C = 1")])
    starts: list[float] = []
    with Loop.open(repo, tag="p", agent=agent, workers=2, **PLAIN) as loop:
        loop.subscribe(lambda e: e.kind == EventKind.RUN_STARTED and starts.append(time.monotonic()))
        loop.optimize()
        exps = loop.experiments
        assert_linear_chain(repo, loop)
        assert loop.best.metric == 7  # all three changes end up combined, each combination measured
        workers = {e.worker for e in exps if e.worker is not None}
        assert workers == {0, 1}
        assert exps[1].summary["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert 1 in agent.in_flight_seen  # the agent saw an experiment in flight when asked for the next
    # Two experiments started within one run's time of each other: they overlapped.
    assert any(b - a < 0.5 for a, b in zip(starts[1:], starts[2:]))


def test_simultaneous_improvements_are_reapplied_not_combined_blindly(repo: Path) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1")])
    with Loop.open(repo, tag="s", agent=agent, workers=2, **PLAIN) as loop:
        loop.optimize()
        exps = {e.description: e for e in loop.experiments}
        first, second = exps["A"], exps["B"]
        assert first.status == Status.KEEP
        assert second.status == Status.DISCARD and "re-applied" in second.reason
        again = next(e for e in loop.experiments if e.description.startswith("re-applied"))
        assert again.parent_sha == first.sha and again.status == Status.KEEP and again.metric == 8
        assert "A = 1" in again.content and "B = 1" in again.content
        assert_linear_chain(repo, loop)


def test_stale_result_that_did_not_improve_is_discarded(repo: Path) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B worse", "B = 0", "B = -5")])
    with Loop.open(repo, tag="w", agent=agent, workers=2, **PLAIN) as loop:
        loop.optimize()
        worse = next(e for e in loop.experiments if e.description == "B worse")
        assert worse.status == Status.DISCARD and "re-applied" not in worse.reason
        assert not any(e.description.startswith("re-applied") for e in loop.experiments)


def test_workers_running_together_are_both_stopped(repo: Path) -> None:
    agent = Agent([("A slow", "SLEEP = 0.6", "SLEEP = 30"), ("B slow", "SLEEP = 0.6", "SLEEP = 31")])
    with Loop.open(repo, tag="y", agent=agent, workers=2, **{**PLAIN, "timeout_s": 120}) as loop:
        loop.baseline()
        running = threading.Event()
        n = {"started": 0}

        def on(e):
            if e.kind == EventKind.RUN_STARTED:
                n["started"] += 1
                if n["started"] == 2:
                    running.set()
        loop.subscribe(on)
        thread = loop.start()
        assert running.wait(20)
        time.sleep(0.5)
        t0 = time.monotonic()
        loop.stop(force=True)
        thread.join(20)
        assert not thread.is_alive() and time.monotonic() - t0 < 15
        statuses = [e.status for e in loop.experiments]
        assert statuses == [Status.KEEP, Status.INTERRUPTED, Status.INTERRUPTED]
        assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    assert runs_of("y/") == []


def runs_of(prefix: str) -> list[psutil.Process]:
    """Live processes started for this run's experiments (the loop marks them with AUTORESEARCH_RUN)."""
    out = []
    for p in psutil.process_iter(["environ", "status"]):
        try:
            if (p.info["environ"] or {}).get("AUTORESEARCH_RUN", "").startswith(prefix) and \
                    p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_store_shape_matches_single_worker(repo: Path) -> None:
    items = [("A", "A = 0", "A = 1")]
    with Loop.open(repo, tag="one", agent=Agent(items), **PLAIN) as loop:
        loop.optimize()
        single = loop.results
    with Loop.open(repo, tag="two", agent=Agent(items), workers=2, **PLAIN) as loop:
        loop.optimize()
        double = loop.results
    assert list(single.columns) == list(double.columns)
    assert list(single["status"]) == list(double["status"]) == ["keep", "keep"]
    assert list(single["metric"]) == list(double["metric"])


def test_merge_file_adjacent_lines_merge_overlaps_conflict() -> None:
    base = "A = 0\nB = 0\nC = 0\n"
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 0\nB = 1\nC = 0\n") == "A = 1\nB = 1\nC = 0\n"
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 2\nB = 0\nC = 0\n") is None
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 1\nB = 0\nC = 0\n") == "A = 1\nB = 0\nC = 0\n"


# -- Ray ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_instance():
    pytest.importorskip("ray")
    from autoresearch_nb.ray_executor import start_ray
    ray = start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_two_workers_linear_chain(repo: Path, ray_instance) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1"), ("C", "C = 0", "C = 1")])
    with Loop.open(repo, tag="r", agent=agent, workers=2, executor="ray", **PLAIN) as loop:
        loop.optimize()
        assert_linear_chain(repo, loop)
        assert loop.best.metric == 7
        ran = [e for e in loop.experiments if e.worker is not None]
        assert {e.worker for e in ran} == {0, 1}
        assert all(Path(e.log_path).read_text().count("score:") == 1 for e in ran)  # logs came back
        assert loop.curve(ran[0].number)  # progress streamed back


@pytest.mark.slow
def test_ray_worker_killed_mid_run_is_interrupted(repo: Path, ray_instance) -> None:
    agent = Agent([("A slow", "SLEEP = 0.6", "SLEEP = 60"), ("B", "B = 0", "B = 1")])
    with Loop.open(repo, tag="k", agent=agent, workers=2, executor="ray", **{**PLAIN, "timeout_s": 120}) as loop:
        loop.baseline()
        thread = loop.start()
        # Find the guard of the slow run, then SIGKILL the Ray worker process that started it.
        guard = None
        for _ in range(300):
            for p in psutil.process_iter(["cmdline", "environ"]):
                try:
                    env = p.info["environ"] or {}
                    if "guard.py" in " ".join(p.info["cmdline"] or []) and \
                            env.get("AUTORESEARCH_RUN") == "k/1":
                        guard = p
                except psutil.Error:
                    continue
            if guard:
                break
            time.sleep(0.1)
        assert guard is not None
        worker_pid = guard.ppid()
        os.kill(worker_pid, signal.SIGKILL)
        thread.join(90)
        assert not thread.is_alive()
        exps = {e.number: e for e in loop.experiments}
        assert exps[1].status == Status.INTERRUPTED and "lost" in exps[1].reason
        assert exps[2].status == Status.KEEP  # the other worker went on
        time.sleep(1.5)
        assert not guard.is_running() or guard.status() == psutil.STATUS_ZOMBIE
