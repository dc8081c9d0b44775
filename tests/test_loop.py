# python -m pytest tests/test_loop.py -q
"""The Loop end to end on fake targets: real git in temp dirs, real subprocesses, real SQLite."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import DEMO_TARGET, git

from autoresearch_nb import ConfigError, EventKind, Loop, Proposal, Status, load_results
from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.errors import StateError

# Settings that make a run fast and the decision rule the plain one (strictly better).
FAST = dict(metric="score", time_budget_s=5, timeout_s=20)


class ScriptedAgent:
    """Proposes a fixed list of (description, search, replace) edits, then runs out."""

    name = "scripted"

    def __init__(self, steps: list[tuple[str, str, str]]) -> None:
        self.steps = list(steps)
        self.told: list = []
        self.contexts: list = []

    def propose(self, context):
        self.contexts.append(context)
        if not self.steps:
            raise QueueExhausted("no more")
        desc, search, replace = self.steps.pop(0)
        from autoresearch_nb import Edit
        return Proposal(desc, edits=(Edit(search, replace),))

    def tell(self, exp):
        self.told.append(exp)


def open_loop(repo: Path, agent, tag: str = "t", **kw) -> Loop:
    return Loop.open(repo, tag=tag, agent=agent, **{**FAST, **kw})


def test_keep_and_discard_minimize(repo: Path) -> None:
    agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0"), ("Y to 5 (worse)", "Y = 2.0", "Y = 5.0")])
    with open_loop(repo, agent) as loop:
        base = loop.baseline()
        assert base.status == Status.KEEP and base.metric == pytest.approx(13.0)
        kept = loop.step()
        assert kept.status == Status.KEEP and kept.metric == pytest.approx(9.0)
        worse = loop.step()
        assert worse.status == Status.DISCARD and worse.metric == pytest.approx(9.0 + 27.0)
        # The branch is back on the kept commit; the discarded commit is still reachable under its ref.
        assert git(repo, "rev-parse", "autoresearch/t") == kept.sha
        assert git(repo, "rev-parse", f"refs/autoresearch/t/{worse.number}") == worse.sha
        assert "Y = 5.0" in git(repo, "show", f"{worse.sha}:train.py")
        assert loop.best.number == kept.number
        assert [e.status for e in agent.told] == [Status.KEEP, Status.KEEP, Status.DISCARD]


def test_keep_when_maximizing(repo: Path) -> None:
    agent = ScriptedAgent([("X to 1 (smaller score)", "X = 3.0", "X = 1.0"), ("Y up", "Y = 2.0", "Y = 5.0")])
    with open_loop(repo, agent, direction="maximize") as loop:
        loop.baseline()
        assert loop.step().status == Status.DISCARD
        assert loop.step().status == Status.KEEP


def test_user_checkout_untouched(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked user file\n")
    (repo / "train.py").write_text(DEMO_TARGET + "# my uncommitted edit\n")
    agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0")])
    with open_loop(repo, agent) as loop:
        loop.optimize(n=2)
    assert (repo / "train.py").read_text().endswith("# my uncommitted edit\n")
    assert (repo / "notes.txt").read_text() == "untracked user file\n"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert sorted(line.strip() for line in git(repo, "status", "--porcelain").splitlines()) == ["?? notes.txt", "M train.py"]


def test_invalid_and_duplicate_proposals_are_recorded(repo: Path) -> None:
    agent = ScriptedAgent([
        ("no match", "Z = 9", "Z = 1"),
        ("syntax error", "X = 3.0", "X = = 1"),
        ("X to 1", "X = 3.0", "X = 1.0"),
        ("X to 1 again", "Y = 2.0", "Y = 2.0  "),  # same file as the baseline up to trailing spaces
    ])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        a, b, c, d = (loop.step() for _ in range(4))
    assert a.status == Status.INVALID and "not found" in a.reason
    assert b.status == Status.INVALID and "does not compile" in b.reason
    assert c.status == Status.KEEP
    assert d.status == Status.SKIPPED and "experiment 3" in d.reason


def test_crash_fail_and_timeout_are_recorded_and_reverted(repo: Path) -> None:
    agent = ScriptedAgent([
        ("crash", "X = 3.0", "X = 3.0\nraise RuntimeError('boom')"),
        ("fail", "X = 3.0", "X = 3.0\nprint('FAIL'); sys.exit(1)"),
        ("hang", "SLEEP = 0.0", "SLEEP = 60.0"),
    ])
    with open_loop(repo, agent, timeout_s=2) as loop:
        base = loop.baseline()
        crash, fail, hang = (loop.step() for _ in range(3))
        assert crash.status == Status.CRASH and "RuntimeError: boom" in crash.error
        assert fail.status == Status.CRASH
        assert hang.status == Status.TIMEOUT and hang.wall_seconds < 10
        assert loop.workspace.head() == base.parent_sha
        assert loop.workspace.changed_paths() == []


def test_crash_log_tail_in_next_context(repo: Path) -> None:
    agent = ScriptedAgent([("crash", "X = 3.0", "X = 3.0\nraise RuntimeError('boom')")])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        loop.step()
        with pytest.raises(QueueExhausted):
            loop.propose()
    assert "RuntimeError: boom" in agent.contexts[-1].last_log_tail


def test_violation_reverted(repo: Path) -> None:
    (repo / "harness.py").write_text("FIXED = 1\n")
    git(repo, "add", "harness.py")
    git(repo, "commit", "-qm", "harness")
    agent = ScriptedAgent([("cheat", "X = 3.0", "X = 1.0\nopen('harness.py', 'w').write('FIXED = 2')\n"
                                                "open('stray.txt', 'w').write('x')")])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        exp = loop.step()
        # a changed tracked file is a violation; a new file in the run directory is the run's own output
        assert exp.status == Status.VIOLATION and "harness.py" in exp.reason and "stray.txt" not in exp.reason
        assert (loop.workspace.path / "harness.py").read_text() == "FIXED = 1\n"
        assert (repo / "harness.py").read_text() == "FIXED = 1\n" and not (repo / "stray.txt").exists()


def test_events_in_order(repo: Path) -> None:
    agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0")])
    seen: list[EventKind] = []
    with open_loop(repo, agent) as loop:
        loop.subscribe(lambda e: seen.append(e.kind))
        loop.baseline()
        seen.clear()
        loop.step()
    kinds = [k for k in seen if k != EventKind.PROGRESS]
    assert kinds == [EventKind.PROPOSED, EventKind.RUN_STARTED, EventKind.RUN_FINISHED, EventKind.DECIDED]
    assert EventKind.PROGRESS in seen


def test_progress_points_stored(repo: Path) -> None:
    with open_loop(repo, ScriptedAgent([])) as loop:
        base = loop.baseline()
        points = loop.curve(base.number)
    assert [p.step for p in points] == [1, 2, 3]
    assert points[-1].loss == pytest.approx(1 / 3, abs=1e-3)


def test_seed_and_budget_passed_to_run(repo: Path) -> None:
    with open_loop(repo, ScriptedAgent([]), seed=7, time_budget_s=12) as loop:
        base = loop.baseline()
    assert base.summary["seed_seen"] == 7 and base.seed == 7
    assert base.summary["budget_seen"] == 12


def test_resume_continues_the_run(repo: Path) -> None:
    with open_loop(repo, ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0")])) as loop:
        loop.optimize()
    with open_loop(repo, ScriptedAgent([("Y to -1", "Y = 2.0", "Y = -1.0")])) as loop:
        assert [e.number for e in loop.experiments] == [0, 1]
        loop.optimize()
        assert [e.status for e in loop.experiments] == [Status.KEEP] * 3
        assert loop.best.metric == pytest.approx(0.0)
        # The kept history is one linear chain on the run's branch.
        chain = git(repo, "rev-list", "--first-parent", "autoresearch/t").split()
        assert chain[:2] == [loop.experiments[2].sha, loop.experiments[1].sha]


def test_resume_uses_stored_config(repo: Path) -> None:
    with open_loop(repo, ScriptedAgent([])) as loop:
        loop.baseline()
    with Loop.open(repo, tag="t", agent=ScriptedAgent([])) as loop:  # no metric given this time
        assert loop.config.metric == "score"


HOLDER = textwrap.dedent("""\
    import sys, time
    from autoresearch_nb import Loop
    class A:
        name = "a"
        def propose(self, context):
            raise RuntimeError("never asked")
    loop = Loop.open(sys.argv[1], tag="t", agent=A(), metric="score")
    print("OPEN", flush=True)
    time.sleep(60)
""")


def test_second_loop_on_same_tag_in_another_process_refused(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(repo)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "OPEN"
        with pytest.raises(StateError, match=f"already open in another process \\(pid {proc.pid}\\)"):
            open_loop(repo, ScriptedAgent([]))
    finally:
        proc.kill()
        proc.wait(10)
    with open_loop(repo, ScriptedAgent([])) as loop:  # the OS released the dead holder's lock
        assert loop.tag == "t"


def test_reopening_a_tag_in_the_same_process_closes_the_earlier_loop(repo: Path) -> None:
    """Issue 16 bug 3: a notebook's Loop.open cell run twice must not say the kernel itself holds the run."""
    first = open_loop(repo, ScriptedAgent([]))
    first.baseline()
    with open_loop(repo, ScriptedAgent([])) as second:
        assert [e.status for e in second.experiments] == [Status.KEEP]
        assert first.running is False
    first.close()  # closing the earlier one again is harmless


def test_stop_force_interrupts_running_experiment(repo: Path) -> None:
    agent = ScriptedAgent([("slow", "SLEEP = 0.0", "SLEEP = 30.0")])
    with open_loop(repo, agent, timeout_s=60) as loop:
        loop.baseline()
        started = threading.Event()
        loop.subscribe(lambda e: e.kind == EventKind.RUN_STARTED and started.set())
        thread = loop.start()
        assert started.wait(10)
        time.sleep(0.3)
        t0 = time.monotonic()
        loop.stop(force=True)
        thread.join(15)
        assert not thread.is_alive() and time.monotonic() - t0 < 10
        last = loop.experiments[-1]
        assert last.status == Status.INTERRUPTED
        assert loop.workspace.head() == loop.best.sha or loop.workspace.head() == loop.experiments[0].parent_sha
        assert loop.workspace.changed_paths() == []


def test_optimize_respects_n_and_max_experiments(repo: Path) -> None:
    steps = [(f"X to {v}", "X = 3.0", f"X = {v}") for v in ("2.5", "2.0", "1.5", "1.0")]
    with open_loop(repo, ScriptedAgent(list(steps)), max_experiments=3) as loop:
        done = loop.optimize(n=10)
        assert len(done) == 3 and len(loop.experiments) == 3
    with open_loop(repo, ScriptedAgent(list(steps)), tag="u") as loop:
        assert len(loop.optimize(n=2)) == 2


def test_results_dataframe_and_tsv(repo: Path) -> None:
    agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0"), ("worse", "Y = 2.0", "Y = 5.0"),
                           ("crash", "Y = 2.0", "Y = 2.0\nraise SystemExit(3)")])
    with open_loop(repo, agent) as loop:
        loop.optimize()
        df = loop.results
        tsv = loop.results_tsv.read_text().splitlines()
    assert list(df["status"]) == ["keep", "keep", "discard", "crash"]
    assert df.loc[1, "delta"] == pytest.approx(-4.0)
    assert bool(df.loc[1, "is_best"]) and not bool(df.loc[0, "is_best"])
    assert "peak_memory_mb" in df.columns
    assert tsv[0].split("\t") == ["commit", "score", "memory_gb", "status", "description"]
    assert [line.split("\t")[3] for line in tsv[1:]] == ["keep", "keep", "discard", "crash"]
    assert tsv[2].split("\t")[1:3] == ["9.000000", "2.0"]
    assert tsv[4].split("\t")[1] == "0.000000"


def test_load_results_while_running(repo: Path) -> None:
    agent = ScriptedAgent([("slow", "SLEEP = 0.0", "SLEEP = 1.5")])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        thread = loop.start()
        time.sleep(0.5)
        df = load_results(repo, "t")  # from the same process, a separate connection, no lock
        out = subprocess.run([sys.executable, "-c", "import autoresearch_nb as a, sys;"
                              f"df=a.load_results({str(repo)!r}, 't'); print(len(df), list(df.status))"],
                             capture_output=True, text=True, timeout=60)
        thread.join(30)
    assert len(df) == 2 and df.iloc[-1]["status"] == "running"
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 ")


def test_secrets_not_in_child_env(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "test-should-not-leak")
    monkeypatch.setenv("HF_TOKEN", "hf-should-not-leak")
    agent = ScriptedAgent([("print env", 'print("peak_memory_mb: 2048")',
                            "print('leak:', int(any('leak' in v for v in os.environ.values())))")])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        exp = loop.step()
    assert exp.summary.get("leak") == 0


def test_not_a_git_repo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a git repository"):
        Loop.open(tmp_path, tag="t", agent=ScriptedAgent([]))


def test_bad_tag(repo: Path) -> None:
    with pytest.raises(ConfigError, match="tag"):
        Loop.open(repo, tag="../evil", agent=ScriptedAgent([]))


KILLER = textwrap.dedent("""\
    import sys
    from autoresearch_nb import Loop, Proposal, Edit
    class A:
        name = "a"
        def propose(self, context):
            return Proposal("slow", edits=(Edit("SLEEP = 0.0", "SLEEP = 60.0"),))
    loop = Loop.open(sys.argv[1], tag="k", agent=A(), metric="score", time_budget_s=5, timeout_s=120)
    loop.baseline()
    print("BASELINE_DONE", flush=True)
    loop.step()
""")


def test_kill_9_mid_run_then_reopen(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(KILLER)
    proc = subprocess.Popen([sys.executable, str(script), str(repo)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "BASELINE_DONE"
    # Wait until the slow experiment is running (its row holds the child's pid).
    from autoresearch_nb.store import Store
    store = Store(repo / ".autoresearch" / "store.db")
    child = None
    for _ in range(200):
        rows = store.experiments("k")
        if len(rows) == 2 and rows[1].status == Status.RUNNING and rows[1].pid:
            child = rows[1].pid
            break
        time.sleep(0.05)
    store.close()
    assert child is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.kill(child, 0)  # the orphaned run is still alive until the loop reopens

    with Loop.open(repo, tag="k", agent=ScriptedAgent([])) as loop:
        exps = loop.experiments
        assert [e.status for e in exps] == [Status.KEEP, Status.INTERRUPTED]
        assert loop.workspace.head() == exps[0].parent_sha
        assert loop.workspace.changed_paths() == []
        assert git(repo, "rev-parse", "refs/autoresearch/k/1") == exps[1].sha
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the orphaned run was not killed on reopen")


def test_non_ml_target_maximize_function_speed(tmp_path: Path) -> None:
    """The loop on something that is not ML: the throughput of a function, maximised."""
    root = tmp_path / "fn"
    root.mkdir()
    git(root, "init", "-q")
    (root / "bench.py").write_text(textwrap.dedent("""\
        import time
        N = 20000
        METHOD = "loop"
        def work(n):
            if METHOD == "loop":
                s = 0
                for i in range(n):
                    s += i
                return s
            return n * (n - 1) // 2
        t = time.perf_counter(); reps = 0
        while time.perf_counter() - t < 0.2:
            work(N); reps += 1
        print("---"); print(f"calls_per_s: {reps / (time.perf_counter() - t):.1f}")
    """))
    git(root, "add", ".")
    git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init")
    agent = ScriptedAgent([("closed form", 'METHOD = "loop"', 'METHOD = "formula"')])
    with Loop.open(root, tag="speed", agent=agent, editable="bench.py", command="python bench.py",
                   metric="calls_per_s", direction="maximize", time_budget_s=5) as loop:
        loop.optimize()
        statuses = [e.status for e in loop.experiments]
        assert statuses == [Status.KEEP, Status.KEEP]
        assert loop.experiments[1].metric > 10 * loop.experiments[0].metric


def test_setup_runs_once_before_the_first_experiment(repo: Path) -> None:
    setup = "python -c \"import pathlib, os; p = pathlib.Path(os.environ['MARK']); " \
            "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\""
    marks = repo.parent / "marks"  # setup runs in the sandbox too: a path outside it is declared writable
    mark = marks / "setup-ran.txt"
    os.environ["MARK"] = str(mark)
    try:
        agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0")])
        with open_loop(repo, agent, setup=setup, sandbox_write=(str(marks),)) as loop:
            loop.optimize()
            assert len(loop.experiments) == 2
    finally:
        del os.environ["MARK"]
    assert mark.read_text() == "x"


def test_failing_setup_raises_before_any_experiment(repo: Path) -> None:
    from autoresearch_nb import AutoresearchError
    with open_loop(repo, ScriptedAgent([]), setup="python -c 'raise SystemExit(4)'") as loop:
        with pytest.raises(AutoresearchError, match="setup command"):
            loop.baseline()
        assert loop.experiments == []
