# python -m pytest tests/test_parallel.py -q
"""Parallel workers: the local executor and a local Ray instance on a sleep-bound target (the cores are not
the bottleneck), the linear-chain invariant, a worker killed mid-run, and the store's shape."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import git, make_repo, orphan_mode

from autoresearch_nb import Edit, EventKind, Loop, Proposal, Status
from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.boundary import THREAD_VARS, usable_cores

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
    print(f"blas_threads: {os.environ.get('MKL_NUM_THREADS')}/{os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"gpu: gpu{os.environ.get('CUDA_VISIBLE_DEVICES')}")
    print(f"key_seen: {int('ANTHROPIC_API_KEY' in os.environ)}")
""")
# The same target, held open while a file named for its values (hold-A-B-C) exists in TEST_HOLD_DIR: a test
# decides when a run ends, without a clock and without a line in the file that a merge would see.
GATED = TARGET.replace("time.sleep(SLEEP)\n", "time.sleep(SLEEP)\n"
                       "HOLD = os.path.join(os.environ.get('TEST_HOLD_DIR', '/nonexistent'), f'hold-{A}-{B}-{C}')\n"
                       "while os.path.exists(HOLD):\n    time.sleep(0.02)\n")
PLAIN = dict(metric="score", time_budget_s=5, timeout_s=60, noise_repeats=1, noise_k=0)
SHARE = max(1, usable_cores() // 2)  # each of two workers' thread pools: its share of the cores


FILES = {"train.py": GATED}


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in THREAD_VARS:  # the user's own setting would stand; these tests see the loop's
        monkeypatch.delenv(name, raising=False)
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


@pytest.fixture()
def holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``hold(loop, (a, b, c), description)``: a run of the file with those values ends only once the experiment
    ``description`` is decided (so it is measured on a parent that is no longer the best)."""
    folder = tmp_path / "holds"
    folder.mkdir()
    monkeypatch.setenv("TEST_HOLD_DIR", str(folder))

    def hold(loop: Loop, values: tuple[int, int, int], description: str) -> None:
        gate = folder / "hold-{}-{}-{}".format(*values)
        gate.touch()
        loop.subscribe(lambda e: e.kind == EventKind.DECIDED and e.experiment.description == description
                       and gate.unlink(missing_ok=True))
    return hold


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
    flying: set[int] = set()
    most = [0]

    def count(e) -> None:
        if e.kind == EventKind.RUN_STARTED:
            flying.add(e.experiment.number)
            most[0] = max(most[0], len(flying))
        elif e.kind == EventKind.RUN_FINISHED:
            flying.discard(e.experiment.number)
    with Loop.open(repo, tag="p", agent=agent, workers=2, **PLAIN) as loop:
        loop.subscribe(count)
        loop.optimize()
        exps = loop.experiments
        assert_linear_chain(repo, loop)
        assert loop.best.metric == 7  # all three changes end up combined, each combination measured
        workers = {e.worker for e in exps if e.worker is not None}
        assert workers == {0, 1}
        for e in exps[1:]:  # seen by each worker's child: its share of the cores, not a thread per core each
            assert (e.summary["threads"], e.summary["blas_threads"]) == (SHARE, f"{SHARE}/{SHARE}"), e.summary
    assert 1 in agent.in_flight_seen  # the agent saw an experiment in flight when asked for the next
    assert most[0] == 2  # two experiments were in flight at once (with one worker this is 1)


def test_simultaneous_improvements_are_reapplied_not_combined_blindly(repo: Path, holds) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1")])
    with Loop.open(repo, tag="s", agent=agent, workers=2, **PLAIN) as loop:
        holds(loop, (0, 1, 0), "A")  # B finishes only after A is decided: B is stale by construction
        loop.optimize()
        exps = {e.description: e for e in loop.experiments}
        first, second = exps["A"], exps["B"]
        assert first.status == Status.KEEP
        assert second.status == Status.DISCARD and "re-applied" in second.reason
        again = next(e for e in loop.experiments if e.description.startswith("re-applied"))
        assert again.parent_sha == first.sha and again.status == Status.KEEP and again.metric == 8
        assert "A = 1" in again.content and "B = 1" in again.content
        assert_linear_chain(repo, loop)


def test_stale_result_that_did_not_improve_is_discarded(repo: Path, holds) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("B worse", "B = 0", "B = -5")])
    with Loop.open(repo, tag="w", agent=agent, workers=2, **PLAIN) as loop:
        holds(loop, (0, -5, 0), "A")
        loop.optimize()
        a = next(e for e in loop.experiments if e.description == "A")
        worse = next(e for e in loop.experiments if e.description == "B worse")
        assert a.status == Status.KEEP
        assert worse.parent_sha == loop.experiments[0].sha != a.sha
        assert worse.reason.startswith("stale parent #0: "), worse.reason
        assert worse.status == Status.DISCARD and "re-applied" not in worse.reason
        assert not any(e.description.startswith("re-applied") for e in loop.experiments)
        # the run that happened is the row's evidence, as for any decided experiment
        assert worse.runs == [worse.metric] == [15] and worse.seeds == [worse.seed] == [42]


def stale_outcome(repo: Path, holds, items: list, held: tuple[int, int, int], tag: str) -> list:
    """Run ``items`` on two workers, the second held until the first is decided; returns the experiments."""
    with Loop.open(repo, tag=tag, agent=Agent(items), workers=2, **PLAIN) as loop:
        holds(loop, held, items[0][0])
        loop.optimize()
        assert_linear_chain(repo, loop)
        return loop.experiments


def test_a_stale_change_that_conflicts_with_the_new_best_is_discarded(repo: Path, holds) -> None:
    exps = stale_outcome(repo, holds, [("A", "A = 0", "A = 1"), ("A too", "A = 0", "A = 2")], (2, 0, 0), "c")
    assert [e.status for e in exps] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    assert "its change conflicts with the new best #1" in exps[2].reason
    assert not any(e.description.startswith("re-applied") for e in exps)


@pytest.mark.parametrize("first", [
    ("A and C", "A = 0\nB = 0\nC = 0", "A = 1\nB = 0\nC = 1"),  # two hunks, one of them the stale change
    ("B and C", "B = 0\nC = 0", "B = 1\nC = 1"),                 # one hunk with the stale change inside it
])
def test_a_stale_change_the_new_best_already_has_is_discarded(repo: Path, holds, first) -> None:
    exps = stale_outcome(repo, holds, [first, ("C", "C = 0", "C = 1")], (0, 0, 1), "h")
    assert [e.status for e in exps] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    assert "the new best #1 already has this change" in exps[2].reason
    assert not any(e.description.startswith("re-applied") for e in exps)


def test_a_change_overtaken_again_and_again_stops_being_reapplied(repo: Path, holds,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch_nb import parallel
    monkeypatch.setattr(parallel, "MAX_REAPPLY", 1)
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1"), ("C", "C = 0", "C = 1")])
    with Loop.open(repo, tag="l", agent=agent, workers=2, **PLAIN) as loop:
        holds(loop, (0, 1, 0), "A")  # B is overtaken by A, re-applied onto A ...
        holds(loop, (1, 1, 0), "C")  # ... and overtaken again, by C
        loop.optimize()
        assert_linear_chain(repo, loop)
        exps = {e.description: e for e in loop.experiments}
    again = exps[next(d for d in exps if d.startswith("re-applied"))]
    assert exps["B"].status == Status.DISCARD and f"as #{again.number}" in exps["B"].reason
    assert again.status == Status.DISCARD and "re-applied 1 times already" in again.reason
    assert exps["C"].status == Status.KEEP and len(exps) == 5  # no third try


def test_each_worker_gets_its_own_gpu_the_users_threads_and_no_secret(repo: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch_nb import executors
    monkeypatch.setattr(executors, "gpu_count", lambda: 2)  # the edge: NVML on a machine with two GPUs
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "test-should-not-leak")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands, and the loop adds no other
    agent = Agent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1"), ("C", "C = 0", "C = 1")])
    with Loop.open(repo, tag="g", agent=agent, workers=2, **PLAIN) as loop:
        loop.optimize()
        ran = [e for e in loop.experiments if e.worker is not None]
    assert {e.worker for e in ran} == {0, 1}
    for e in ran:  # seen by the child itself
        assert e.summary["gpu"] == f"gpu{e.worker}" and e.summary["key_seen"] == 0, (e.number, e.summary)
        assert (e.summary["threads"], e.summary["blas_threads"]) == (3, "None/None"), (e.number, e.summary)


def test_a_violation_in_a_worker_is_recorded_and_reverted(repo: Path) -> None:
    agent = Agent([("A", "A = 0", "A = 1"), ("stray", "C = 0", "C = 1\nopen(__file__, 'a').write('# stray')")])
    with Loop.open(repo, tag="v", agent=agent, workers=2, **PLAIN) as loop:
        loop.optimize()
        exps = {e.description: e for e in loop.experiments}
        assert exps["stray"].status == Status.VIOLATION and "rewritten by the run" in exps["stray"].reason
        assert exps["A"].status == Status.KEEP and loop.best.metric == 9
        assert_linear_chain(repo, loop)


def test_the_noise_rule_and_confirmation_runs_with_two_workers(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from test_loop_noise import SIGMA, TRAIN, Scripted, _marginal_effect, value

    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    threads = "print(f\"threads: {os.environ.get('OMP_NUM_THREADS')}\")\n"
    repo = make_repo(tmp_path / "noisy", {"train.py": TRAIN + threads})
    effect = _marginal_effect(1, 0.5)  # passes by 0.5σ̂ on its first run: confirmed with a second seed
    with Loop.open(repo, tag="n", agent=Scripted([(1, effect), (2, 5 * SIGMA)]), workers=2, time_budget_s=10,
                   timeout_s=60) as loop:
        loop.optimize()
        base, marginal, worse = loop.experiments
        sigma = loop.noise["sigma"]
    assert base.runs[:3] == [value(0, 0.0, 42 + i) for i in range(3)] and base.seeds[:3] == [42, 43, 44]
    # the paired rule (the default for every driver): the candidate at the baseline's seeds, one at a time
    assert marginal.seeds[:2] == [42, 43] and len(marginal.seeds) >= 2
    assert marginal.runs == pytest.approx([value(1, effect, s) for s in marginal.seeds])
    assert marginal.status in (Status.KEEP, Status.DISCARD) and "paired seeds" in marginal.reason
    assert worse.status == Status.DISCARD and "worse" in worse.reason  # fresh or stale, never kept
    assert worse.runs == pytest.approx([value(2, 5 * SIGMA, 42)])  # clearly worse: one run, no second seed
    assert marginal.worker is not None and worse.worker is not None
    assert sigma > 0 and marginal.noise_sigma > 0 and marginal.threshold > 0
    # the confirmation run ran beside the other worker's run: it got a worker's share of the cores too
    confirmation = repo / ".autoresearch" / "logs" / "n" / f"{marginal.number:04d}.1.log"
    assert f"threads: {SHARE}" in confirmation.read_text()


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
        deadline = time.monotonic() + 30  # both train.py processes exist before the stop
        while len(runs_of("y/")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        loop.stop(force=True)
        thread.join(20)
        # generous: it tells a forced stop from waiting out the 30 s runs
        assert not thread.is_alive() and time.monotonic() - t0 < 15
        statuses = [e.status for e in loop.experiments]
        assert statuses == [Status.KEEP, Status.INTERRUPTED, Status.INTERRUPTED]
        assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    assert runs_of("y/") == []


def test_kill_9_with_two_workers_running_then_reopen(repo: Path, tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent("""\
        import sys
        from autoresearch_nb import Edit, Loop, Proposal
        class A:
            name = "a"
            steps = [("A slow", "A = 0", "A = 1\\nSLEEP = 60"), ("B slow", "B = 0", "B = 1\\nSLEEP = 61")]
            def propose(self, context):
                if not self.steps:
                    import time; time.sleep(600)
                desc, search, replace = self.steps.pop(0)
                return Proposal(desc, edits=(Edit(search, replace),))
        loop = Loop.open(sys.argv[1], tag="k9", agent=A(), workers=2, metric="score", time_budget_s=5,
                         timeout_s=120, noise_repeats=1, noise_k=0, sandbox=sys.argv[2])
        loop.optimize()
    """))
    proc = subprocess.Popen([sys.executable, str(driver), str(repo), orphan_mode()])
    deadline = time.monotonic() + 60
    while len(markers(running := runs_of("k9/"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert markers(running) == {"k9/1", "k9/2"}, "the two slow runs never ran together"
    proc.kill()
    proc.wait(10)
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running)  # orphaned
    with Loop.open(repo, tag="k9", agent=Agent([]), workers=2, **PLAIN) as loop:
        base, a, b = loop.experiments
        assert (a.status, b.status) == (Status.INTERRUPTED, Status.INTERRUPTED)
        assert loop.workspace.head() == base.sha and loop.workspace.changed_paths() == []
    psutil.wait_procs(running, timeout=30)
    assert runs_of("k9/") == []


def markers(procs: list[psutil.Process]) -> set[str]:
    """The experiments these processes run for (a sandboxed run is its wrapper and train.py: two processes)."""
    out = set()
    for p in procs:
        try:
            out.add(p.environ().get("AUTORESEARCH_RUN", ""))
        except psutil.Error:
            continue
    return out


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
        assert all(e.summary["threads"] == SHARE for e in ran)  # not Ray's default of one, nor one per core
        assert all(Path(e.log_path).read_text().count("score:") == 1 for e in ran)  # logs came back
        assert loop.curve(ran[0].number)  # progress streamed back


@pytest.mark.slow
def test_ray_tasks_see_no_secret_and_a_violation_is_reverted(repo: Path, ray_instance,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "test-should-not-leak")
    agent = Agent([("A", "A = 0", "A = 1"), ("stray", "C = 0", "C = 1\nopen(__file__, 'a').write('# stray')")])
    with Loop.open(repo, tag="rv", agent=agent, workers=2, executor="ray", **PLAIN) as loop:
        loop.optimize()
        exps = {e.description: e for e in loop.experiments}
        assert exps["stray"].status == Status.VIOLATION and "rewritten by the run" in exps["stray"].reason
        assert exps["A"].status == Status.KEEP and exps["A"].summary["key_seen"] == 0
        assert loop.workspace.changed_paths() == []
        assert_linear_chain(repo, loop)


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
        psutil.wait_procs([guard], timeout=30)  # returns as soon as it is gone
        assert not guard.is_running() or guard.status() == psutil.STATUS_ZOMBIE


# Two slow experiments fill both workers; the third is left for the resumed run.
K9_QUEUE = [{"description": "A slow", "edits": [{"search": "A = 0", "replace": "A = 1"},
                                                {"search": "SLEEP = 0.6", "replace": "SLEEP = 300"}]},
            {"description": "B slow", "edits": [{"search": "B = 0", "replace": "B = 1"},
                                                {"search": "SLEEP = 0.6", "replace": "SLEEP = 301"}]},
            {"description": "C", "edits": [{"search": "C = 0", "replace": "C = 1"}]}]


@pytest.mark.slow
def test_kill_9_of_the_cli_running_ray_tasks_then_resume(tmp_path: Path) -> None:
    """The loop process (the real CLI, the driver of a local Ray instance) dies by SIGKILL while two Ray tasks
    run: no row is lost, the two are interrupted on reopen, nothing of the run is left running, the user's
    checkout is as it was, and the resumed run goes on with the queue."""
    pytest.importorskip("ray")
    from test_cli import alive, cli

    from autoresearch_nb.store import Store

    repo = make_repo(tmp_path / "k9r", {"train.py": TARGET, "queue.json": json.dumps(K9_QUEUE)})
    (repo / "notes.txt").write_text("the user's own untracked file\n")

    def checkout() -> dict[Path, bytes]:  # the user's files (the loop's state lives in .autoresearch/)
        return {p: p.read_bytes() for p in repo.rglob("*")
                if p.is_file() and not {".git", ".autoresearch"} & set(p.relative_to(repo).parts)}

    def training() -> set[str]:  # the experiments whose train.py runs now, on a Ray worker
        out = set()
        for p in runs_of("k9r/"):
            try:
                if "train.py" in " ".join(p.cmdline()):
                    out.add(p.environ().get("AUTORESEARCH_RUN"))
            except psutil.Error:
                continue
        return out

    before = checkout()
    args = ["run", "--tag", "k9r", "--repo", str(repo), "--agent", "queue", "--metric", "score", "--timeout", "600",
            "--workers", "2", "--executor", "ray", "--noise-repeats", "1", "--noise-k", "0"]
    with (tmp_path / "cli.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", *args], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240  # generous: Ray starts its processes slowly on a busy machine
        while training() != {"k9r/1", "k9r/2"} and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert training() == {"k9r/1", "k9r/2"}, (tmp_path / "cli.log").read_text()[-3000:]
        ray_side = psutil.Process(proc.pid).children(recursive=True)  # raylet, GCS, workers, guards, the runs
        assert any("raylet" in " ".join(p.cmdline()) for p in ray_side if alive(p))
    finally:
        proc.kill()  # the SIGKILL under test (or, when the test failed early, the cleanup)
        proc.wait(30)

    store = Store(repo / ".autoresearch" / "store.db")  # read before any reopen: every row is there
    rows = [(e.number, e.description, e.status.value) for e in store.experiments("k9r")]
    store.close()
    assert rows == [(0, "baseline", "keep"), (1, "A slow", "running"), (2, "B slow", "running")]

    # Nothing of the run outlives its driver: Ray's processes share its fate, and each run's guard ends the run
    # when its Ray worker is gone. Waits as long as they take to die (a zombie counts as gone).
    gone_by = time.monotonic() + 120
    while [p for p in ray_side if alive(p)] and time.monotonic() < gone_by:
        time.sleep(0.2)
    assert not [(p.pid, p.cmdline()) for p in ray_side if alive(p)]
    assert runs_of("k9r/") == []

    r = cli(*args, timeout=600)  # the resumed run: recovery on reopen, then the rest of the queue
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(cli("results", "--tag", "k9r", "--repo", str(repo), "--format", "json").stdout)
    assert [(d["description"], d["status"]) for d in data] == [
        ("baseline", "keep"), ("A slow", "interrupted"), ("B slow", "interrupted"), ("C", "keep")]
    assert [d["metric"] for d in data][3] == 9
    assert all("loop process ended while this experiment was running" in d["reason"] for d in data[1:3])
    assert checkout() == before
    assert git(repo, "status", "--porcelain") == "?? notes.txt" and git(repo, "branch", "--show-current") == "main"


CHECK = textwrap.dedent("""\
    import re
    source = open("train.py").read()
    values = [int(re.search(rf"^{name} = (-?[0-9]+)", source, re.M).group(1)) for name in "ABC"]
    print("---")
    print(f"score: {10 - sum(values)}")
""")


@pytest.mark.slow
def test_ray_tasks_are_verified_like_local_runs(tmp_path: Path, ray_instance) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": GATED, "check.py": CHECK})
    agent = Agent([("fake", 'print(f"score: {10 - A - B - C}")', 'print("score: 1000")'), ("A", "A = 0", "A = 1"),
                   ("negative guard", "B = 0", "B = -1")])
    with Loop.open(repo, tag="rq", agent=agent, workers=2, executor="ray", verify="python check.py",
                   guard="python -c \"import re, sys; sys.exit(bool(re.search('^B = -', open('train.py').read(), "
                         "re.M)))\"", **PLAIN) as loop:
        loop.optimize()
        exps = {e.description: e for e in loop.experiments}
        assert exps["fake"].status == Status.TAMPERED and exps["fake"].claimed == 1000
        assert "1000" in exps["fake"].reason
        assert exps["negative guard"].status == Status.GUARD_FAILED
        assert exps["A"].status == Status.KEEP and exps["A"].verified and exps["A"].metric == 9
        assert Path(exps["negative guard"].log_path).with_suffix(".guard.log").exists()  # its log came back
