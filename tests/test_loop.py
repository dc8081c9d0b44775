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

import psutil
import pytest
from conftest import DEMO_TARGET, git, orphan_mode

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
        # generous: killed at the 2 s timeout, far from the 60 s it would sleep
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


def test_a_run_that_rewrites_the_editable_file_itself_is_a_violation(repo: Path) -> None:
    agent = ScriptedAgent([("self-edit", "X = 3.0", "X = 1.0\nopen('train.py', 'a').write('X = -100.0\\n')"),
                           ("X to 2", "X = 3.0", "X = 2.0")])
    with open_loop(repo, agent) as loop:
        base = loop.baseline()
        exp = loop.step()
        assert exp.status == Status.VIOLATION and "train.py (rewritten by the run)" in exp.reason
        assert loop.workspace.head() == base.sha and loop.workspace.changed_paths() == []
        assert "X = -100.0" not in loop.workspace.read(loop.workspace.head())
        after = loop.step()  # the next proposal starts from the best, not from the rewritten file
        assert after.status == Status.KEEP and "X = -100.0" not in after.content


class Failing:
    """An agent with a bug on its first call, then one good proposal."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, context):
        self.calls += 1
        if self.calls == 1:
            raise ZeroDivisionError("a bug in the agent")
        if self.calls == 2:
            return Proposal("X to 1", content=context.source.replace("X = 3.0", "X = 1.0"))
        raise QueueExhausted("done")


def test_an_agent_that_raises_is_a_row_and_the_run_goes_on(repo: Path) -> None:
    with open_loop(repo, Failing()) as loop:
        loop.optimize()
        base, broken, kept = loop.experiments
    assert broken.status == Status.INVALID and broken.sha is None
    assert broken.reason == "the agent raised ZeroDivisionError: a bug in the agent"
    assert kept.status == Status.KEEP and kept.metric == pytest.approx(9.0)


def test_a_run_without_the_metric_is_a_crash_row(repo: Path) -> None:
    agent = ScriptedAgent([("no score", 'print(f"score:', 'print(f"other:')])
    with open_loop(repo, agent) as loop:
        base = loop.baseline()
        exp = loop.step()
    assert exp.status == Status.CRASH and exp.metric is None and "score" in exp.reason
    assert exp.exit_code == 0 and loop.workspace.head() == base.sha


class Unusable:
    """Proposes edits that never apply, forever, at a price per proposal."""

    name = "unusable"

    def __init__(self, cost_usd: float = 0.0) -> None:
        self.cost_usd, self.calls = cost_usd, 0

    def propose(self, context):
        from autoresearch_nb import Edit
        from autoresearch_nb.agents import Usage
        self.calls += 1
        return Proposal(f"idea {self.calls}", edits=(Edit("NOT IN THE FILE", "X = 0"),),
                        usage=Usage(cost_usd=self.cost_usd))


def test_optimize_stops_after_ten_proposals_in_a_row_that_could_not_run(repo: Path) -> None:
    from autoresearch_nb.serial import MAX_IDLE_PROPOSALS
    finished: list[str] = []
    with open_loop(repo, Unusable()) as loop:
        loop.subscribe(lambda e: e.kind == EventKind.LOOP_FINISHED and finished.append(e.message))
        loop.optimize()
        exps = loop.experiments
    assert [e.status for e in exps] == [Status.KEEP] + [Status.INVALID] * MAX_IDLE_PROPOSALS
    assert finished and f"{MAX_IDLE_PROPOSALS} proposals in a row could not run" in finished[-1]


def test_max_cost_usd_stops_the_run_before_the_next_proposal(repo: Path) -> None:
    finished: list[str] = []
    agent = Unusable(cost_usd=0.4)
    with open_loop(repo, agent, max_cost_usd=1.0) as loop:
        loop.subscribe(lambda e: e.kind == EventKind.LOOP_FINISHED and finished.append(e.message))
        loop.optimize()
        assert loop.total_cost_usd == pytest.approx(1.2)
        assert len(loop.experiments) == 4  # baseline + 3 proposals: $0.80 < $1, then $1.20 stops it
    assert agent.calls == 3 and finished[-1].startswith("cost limit: ")


def test_secrets_are_withheld_from_the_setup_command_and_env_allow_passes_one(repo: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "test-should-not-leak")
    monkeypatch.setenv("HF_TOKEN", "hf-allowed-on-purpose")
    out = tmp_path / "out"  # the setup command runs in the sandbox too: a folder it may write (sandbox_write)
    out.mkdir()
    seen = out / "setup-env.txt"
    setup = f"python -c \"import os; open({str(seen)!r}, 'w').write(' '.join(sorted(os.environ)))\""
    agent = ScriptedAgent([("print env", 'print("peak_memory_mb: 2048")',
                            "print('key:', int('ANTHROPIC_API_KEY' in os.environ)); "
                            "print('hf:', int(os.environ.get('HF_TOKEN') == 'hf-allowed-on-purpose'))")])
    with open_loop(repo, agent, setup=setup, env_allow=("HF_TOKEN",), sandbox_write=(str(out),)) as loop:
        loop.baseline()
        exp = loop.step()
    names = seen.read_text().split()
    assert "ANTHROPIC_API_KEY" not in names and "HF_TOKEN" in names and "PATH" in names
    assert (exp.summary.get("key"), exp.summary.get("hf")) == (0, 1)


def test_events_in_order(repo: Path) -> None:
    agent = ScriptedAgent([("X to 1", "X = 3.0", "X = 1.0")])
    seen: list[tuple[EventKind, str]] = []
    with open_loop(repo, agent) as loop:
        loop.subscribe(lambda e: seen.append((e.kind, e.message if e.kind == EventKind.PHASE else "")))
        loop.baseline()
        seen.clear()
        loop.step()
    kinds = [k for k in seen if k[0] != EventKind.PROGRESS]
    phase = EventKind.PHASE  # the pipeline's steps, between the run's start and its end
    assert kinds == [(EventKind.PROPOSED, ""), (EventKind.RUN_STARTED, ""), (phase, "prepare"), (phase, "start"),
                     (phase, "train"), (phase, "done"), (EventKind.RUN_FINISHED, ""), (EventKind.DECIDED, "")]
    assert (EventKind.PROGRESS, "") in seen
    assert set(loop.experiments[-1].phase_seconds) == {"prepare", "start", "train"}  # stored with the row


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
        assert started.wait(60)
        wait_for_row(repo, 1, Status.RUNNING, tag="t")  # the run's process exists (its pid is recorded)
        t0 = time.monotonic()
        loop.stop(force=True)
        thread.join(30)
        # generous: it tells a stop (well under a second when idle) from waiting out the 30 s run
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


def test_load_results_while_running(repo: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the run is held open until both reads are done
    agent = ScriptedAgent([("held", "time.sleep(SLEEP)",
                            f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)")])
    with open_loop(repo, agent) as loop:
        loop.baseline()
        started = threading.Event()
        loop.subscribe(lambda e: e.kind == EventKind.RUN_STARTED and e.experiment.number == 1 and started.set())
        thread = loop.start()
        assert started.wait(60)
        df = load_results(repo, "t")  # from the same process, a separate connection, no lock
        out = subprocess.run([sys.executable, "-c", "import autoresearch_nb as a, sys;"
                              f"df=a.load_results({str(repo)!r}, 't'); print(len(df), list(df.status))"],
                             capture_output=True, text=True, timeout=60)
        gate.touch()
        thread.join(60)
        assert not thread.is_alive() and loop.experiments[1].status == Status.DISCARD  # ran to the end, no gain
    assert len(df) == 2 and df.iloc[-1]["status"] == "running"
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 ") and "'running'" in out.stdout


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


# A loop process for the crash tests: it runs the baseline, then does ``then`` (Python, with ``loop`` and the
# ``Proposal`` and ``Edit`` names) while the test kills it. Its agent proposes ``steps`` in order.
DRIVER = textwrap.dedent("""\
    import os, signal, sys, time
    # as in a Jupyter kernel, an interrupt raises KeyboardInterrupt, even when this process was started with
    # SIGINT ignored (a background job of a non-interactive shell: CI, nohup, `cmd &` inherit SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from autoresearch_nb import Loop, Proposal, Edit
    from autoresearch_nb.git import Workspace
    class A:
        name = "a"
        steps = {steps!r}
        def propose(self, context):
            desc, search, replace = self.steps.pop(0)
            return Proposal(desc, edits=(Edit(search, replace),))
    loop = Loop.open(sys.argv[1], tag="k", agent=A(), metric="score", time_budget_s=5, timeout_s=120, **{config!r})
    loop.baseline()
    print("BASELINE_DONE", flush=True)
    {then}
""")
SLOW = ("slow", "SLEEP = 0.0", "SLEEP = 60.0")


def start_driver(repo: Path, tmp_path: Path, steps=(SLOW,), then: str = "loop.optimize()",
                 config: dict | None = None, wait_baseline: bool = True) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(steps=list(steps), then=then, config=config or {}))
    proc = subprocess.Popen([sys.executable, str(script), str(repo)], stdout=subprocess.PIPE, text=True)
    if wait_baseline:
        assert proc.stdout.readline().strip() == "BASELINE_DONE"
    return proc


def wait_for_row(repo: Path, number: int, status: Status, tag: str = "k"):
    """Experiment ``number`` once the store has it in ``status`` (with a pid, when running)."""
    from autoresearch_nb.store import Store
    store = Store(repo / ".autoresearch" / "store.db")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = [e for e in store.experiments(tag) if e.number == number]
            if rows and rows[0].status == status and (status != Status.RUNNING or rows[0].pid):
                return rows[0]
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"experiment #{number} never became {status.value}")


@pytest.mark.parametrize("kept_first", [False, True])  # the best is the baseline, or a kept experiment
def test_kill_9_mid_run_then_reopen(repo: Path, tmp_path: Path, kept_first: bool) -> None:
    steps = [("X to 1", "X = 3.0", "X = 1.0"), SLOW] if kept_first else [SLOW]
    proc = start_driver(repo, tmp_path, steps, config={"sandbox": orphan_mode()})
    slow = len(steps)
    run = psutil.Process(wait_for_row(repo, slow, Status.RUNNING).pid)  # before the kill: see alive()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert alive(run)  # the orphaned run is still alive until the loop reopens

    with Loop.open(repo, tag="k", agent=ScriptedAgent([])) as loop:
        exps = loop.experiments
        assert [e.status for e in exps] == [Status.KEEP] * slow + [Status.INTERRUPTED]
        assert loop.workspace.head() == exps[slow - 1].sha == exps[slow].parent_sha  # back on the best
        assert ("X = 1.0" in loop.workspace.read(loop.workspace.head())) is kept_first
        assert loop.workspace.changed_paths() == []
        assert git(repo, "rev-parse", f"refs/autoresearch/k/{slow}") == exps[slow].sha
    psutil.wait_procs([run], timeout=30)  # returns as soon as it is gone
    assert not alive(run), "the orphaned run was not killed on reopen"


def test_a_notebook_interrupt_ends_the_run_as_interrupted_and_the_loop_goes_on(repo: Path, tmp_path: Path) -> None:
    # A kernel interrupt is SIGINT to the kernel process: KeyboardInterrupt in the cell running loop.step().
    proc = start_driver(repo, tmp_path, [SLOW, ("X to 1", "X = 3.0", "X = 1.0")], then=textwrap.dedent("""\
        try:
            loop.step()
        except KeyboardInterrupt:
            print("STOPPED", [e.status.value for e in loop.experiments], loop.workspace.changed_paths(), flush=True)
        print("NEXT", loop.step().status.value, flush=True)
    """))
    run = psutil.Process(wait_for_row(repo, 1, Status.RUNNING).pid)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "STOPPED ['keep', 'interrupted'] []"
    assert proc.stdout.readline().strip() == "NEXT keep"  # the same loop, in the same kernel, goes on
    assert proc.wait(60) == 0
    psutil.wait_procs([run], timeout=30)
    assert not alive(run)  # the interrupted run's process was ended, not left behind


def test_an_interrupted_run_in_ipython_shows_one_line_and_still_stops_the_cell(repo: Path, tmp_path: Path) -> None:
    # Issue 26: Kernel > Interrupt printed a 40-line KeyboardInterrupt traceback through library internals. The
    # interrupt still propagates (Run All and papermill must stop), as one line.
    proc = start_driver(repo, tmp_path, [SLOW, ("X to 1", "X = 3.0", "X = 1.0")], then=textwrap.dedent("""\
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance(user_ns={"loop": loop})
        result = shell.run_cell("loop.step()")
        print("ERROR", type(result.error_in_exec).__name__, isinstance(result.error_in_exec, KeyboardInterrupt),
              flush=True)
        print("NEXT", loop.step().status.value, flush=True)
    """))
    wait_for_row(repo, 1, Status.RUNNING)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    shown = out[:out.index("ERROR")]
    assert "Traceback" not in shown and "File " not in shown, shown
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "KeyboardInterrupt: the run was stopped and recorded as interrupted (its log: ") and \
        lines[0].endswith("0001.log)"), lines
    assert "ERROR RunInterrupted True" in out and "NEXT keep" in out and proc.returncode == 0


@pytest.mark.parametrize("point", ["saved-running", "started"])
def test_an_interrupt_while_a_run_starts_closes_its_row_and_stops_its_process(repo: Path, tmp_path: Path,
                                                                              point: str) -> None:
    # CI once caught the interrupt of the test above landing between "the pid is saved" and "the run is
    # waited on": the row stayed running and the process ran on. Here the loop is held exactly in that window
    # (the fault hook sleeps there), and the interrupt arrives then.
    stderr = tmp_path / "stderr.txt"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(steps=[SLOW, ("X to 1", "X = 3.0", "X = 1.0")], config={}, then=textwrap.dedent(f"""\
        os.environ["AUTORESEARCH_FAULT_PAUSE"], os.environ["AUTORESEARCH_FAULT_PAUSE_S"] = "{point}", "3"
        try:
            loop.step()
        except KeyboardInterrupt:
            os.environ.pop("AUTORESEARCH_FAULT_PAUSE")
            first = loop.experiments[1]
            print("STOPPED", [e.status.value for e in loop.experiments], loop.workspace.changed_paths(),
                  first.pid, flush=True)
        print("NEXT", loop.step().status.value, flush=True)
    """)))
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(repo)], stdout=subprocess.PIPE, text=True,
                                stderr=err)
    assert proc.stdout.readline().strip() == "BASELINE_DONE"
    deadline = time.monotonic() + 60
    while f"fault-pause {point}" not in stderr.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)  # the run, when it has started
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline().strip()
    assert line.startswith("STOPPED ['keep', 'interrupted'] []"), line + stderr.read_text()[-2000:]
    assert proc.stdout.readline().strip() == "NEXT keep"
    assert proc.wait(60) == 0
    assert (point == "started") == bool(children)
    psutil.wait_procs(children, timeout=30)
    assert not any(alive(c) for c in children)  # the run that had started was stopped, not left running


def test_a_row_left_proposed_by_a_dead_loop_is_closed_on_reopen(repo: Path, tmp_path: Path) -> None:
    proc = start_driver(repo, tmp_path, [("X to 1", "X = 3.0", "X = 1.0")],
                        then='loop.propose(); print("PROPOSED", flush=True); time.sleep(600)')
    assert proc.stdout.readline().strip() == "PROPOSED"
    proc.kill()
    proc.wait(10)
    with Loop.open(repo, tag="k", agent=ScriptedAgent([])) as loop:
        base, left = loop.experiments
        assert left.status == Status.INTERRUPTED and "before it ran" in left.reason and left.sha is None
        assert loop.workspace.head() == base.sha and loop.workspace.changed_paths() == []
        with pytest.raises(QueueExhausted):
            loop.step()  # the loop goes on from the best; the closed row is not run
        assert loop.experiments[1].status == Status.INTERRUPTED


def test_kill_9_during_the_noise_repeats_kills_the_orphaned_repeat_on_reopen(repo: Path, tmp_path: Path) -> None:
    # The baseline's first run (seed 42) is quick, its noise repeats (seeds 43, 44) hang.
    slow_repeats = DEMO_TARGET.replace("SLEEP = 0.0", "SLEEP = 0.0 if os.environ['AUTORESEARCH_SEED'] == '42' else 60")
    (repo / "train.py").write_text(slow_repeats)
    git(repo, "commit", "-qam", "slow repeats")
    proc = start_driver(repo, tmp_path, [], then="", config={"noise_repeats": 3, "sandbox": orphan_mode()},
                        wait_baseline=False)
    deadline = time.monotonic() + 60
    while not (repeats := runs_of(repo, "k/0", seed="43")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert repeats, "the noise repeat never started"
    proc.kill()
    proc.wait(10)
    assert all(alive(p) for p in repeats)  # orphaned: the loop is gone, the repeat is not
    with Loop.open(repo, tag="k", agent=ScriptedAgent([])) as loop:
        (base,) = loop.experiments
        assert base.status == Status.INTERRUPTED and base.runs and base.seeds == [42]
        assert loop.workspace.changed_paths() == []
    psutil.wait_procs(repeats, timeout=30)
    assert not [p for p in repeats if alive(p)], "the orphaned repeat run was not killed on reopen"


def runs_of(repo: Path, marker: str, seed: str) -> list[psutil.Process]:
    """Live train.py processes of one experiment of ``repo`` (the loop marks them with AUTORESEARCH_RUN; they
    run in the repository's run directories, so another test's tag "k" running meanwhile is not counted) and
    seed."""
    from autoresearch_nb.layout import RunPaths
    where = str(RunPaths(repo, marker.split("/")[0]).session())
    found = []
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if (env.get("AUTORESEARCH_RUN"), env.get("AUTORESEARCH_SEED")) == (marker, seed) and \
                    p.cwd().startswith(where) and "train.py" in " ".join(p.cmdline()) and alive(p):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_the_row_is_committed_before_the_git_reset(repo: Path, tmp_path: Path) -> None:
    # Fault injection: the loop process dies at the first git reset after the run, i.e. while discarding.
    proc = start_driver(repo, tmp_path, [("Y to 5 (worse)", "Y = 2.0", "Y = 5.0")], then=(
        "exp = loop.run(loop.propose()); "
        "Workspace.restore = lambda self, sha: os._exit(3); "
        "loop.decide(exp)"))
    assert proc.wait(60) == 3
    worse = wait_for_row(repo, 1, Status.DISCARD)  # the decision survived the crash that cut the reset
    assert worse.decided_at is not None and worse.metric == pytest.approx(40.0)
    with Loop.open(repo, tag="k", agent=ScriptedAgent([])) as loop:
        base, again = loop.experiments
        assert again == worse and again.status == Status.DISCARD  # not re-run, not interrupted
        assert loop.workspace.head() == base.sha and loop.workspace.changed_paths() == []
        assert git(repo, "rev-parse", "refs/autoresearch/k/1") == worse.sha  # its diff is kept


def alive(p: psutil.Process) -> bool:
    """Running and not a zombie (a container whose PID 1 does not reap leaves zombies)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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
