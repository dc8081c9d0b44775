# python -m pytest tests/test_lookahead.py -q
"""Overlap: the next proposal is prepared while an experiment runs. Real git, real subprocesses, real SQLite;
the agents below are the fakes (scripted proposals, some slow, some waiting for the test)."""
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
from conftest import DEMO_TARGET, make_repo

from autoresearch_nb import Edit, EventKind, Loop, Proposal, Status, load_results
from autoresearch_nb.agents.base import QueueExhausted, Usage
from autoresearch_nb.store import Store

# A run of about a second, so a proposal made during it provably overlaps it.
SLOW_TARGET = DEMO_TARGET.replace("SLEEP = 0.0", "SLEEP = 1.0")
FAST = dict(metric="score", time_budget_s=5, timeout_s=30, noise_repeats=1)


class Agent:
    """Proposes a fixed list of (description, search, replace) edits; logs when it is asked into ``log``."""

    name = "scripted"

    def __init__(self, steps, log=None, delay_s: float = 0.0, cost: float = 0.0, gate=None) -> None:
        self.steps = list(steps)
        self.log = log if log is not None else []
        self.delay_s = delay_s
        self.cost = cost
        self.gate = gate  # called with the context before answering (a test holds the agent here)
        self.contexts: list = []

    def propose(self, context):
        self.contexts.append(context)
        if self.gate is not None:
            self.gate(context)
        self.log.append(("asked", tuple(e.number for e in context.in_flight)))
        time.sleep(self.delay_s)
        if not self.steps:
            raise QueueExhausted("no more")
        desc, search, replace = self.steps.pop(0)
        return Proposal(desc, edits=(Edit(search, replace),), usage=Usage(cost_usd=self.cost))


@pytest.fixture()
def slow_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "research", {"train.py": SLOW_TARGET, "program.md": "Make the score small.\n"})


def open_loop(repo: Path, agent, tag: str = "t", **kw) -> Loop:
    return Loop.open(repo, tag=tag, agent=agent, **{**FAST, "lookahead": 1, **kw})


def wait_for(log: list, entry, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while entry not in log:
        if time.monotonic() > deadline:
            pytest.fail(f"{entry} never happened: {log}")
        time.sleep(0.01)


def test_the_next_proposal_is_asked_while_the_run_runs(slow_repo: Path) -> None:
    log: list = []

    def after_run_started(context):  # the prepared proposal is answered once its in-flight run has started
        for exp in context.in_flight:
            wait_for(log, ("run_started", exp.number))

    agent = Agent([("X to 1", "X = 3.0", "X = 1.0"), ("Y to 5", "Y = 2.0", "Y = 5.0"),
                   ("Y to 0", "Y = 2.0", "Y = 0.0")], log, gate=after_run_started)
    with open_loop(slow_repo, agent) as loop:
        loop.subscribe(lambda ev: log.append((ev.kind.value, ev.experiment.number))
                       if ev.kind in (EventKind.RUN_STARTED, EventKind.RUN_FINISHED) else None)
        loop.baseline()
        exps = loop.optimize(n=3)
        assert [e.number for e in exps] == [1, 2, 3]
        # #2 was asked for while #1 ran (told #1 is in flight), #3 while #2 ran; #1 when nothing ran.
        for n in (1, 2):
            asked = log.index(("asked", (n,)))
            assert log.index(("run_started", n)) < asked < log.index(("run_finished", n))
        assert ("asked", ()) in log and ("asked", (3,)) not in log  # #3 was the call's last: nothing prepared
        rows = {e.number: e for e in loop.experiments}
        assert [rows[n].prepared_during for n in (1, 2, 3)] == [None, 1, 2]
        assert rows[2].created_at < rows[1].ended_at and rows[3].created_at < rows[2].ended_at
        assert all(rows[n].propose_seconds is not None for n in (1, 2, 3))
        df = loop.results
        assert list(df["prepared_during"].iloc[2:].astype(int)) == [1, 2]
        assert 0 < df.attrs["duty_cycle"] <= 1 and df.attrs["prepared"] == 2


def test_the_first_proposal_is_prepared_while_the_baseline_runs(slow_repo: Path) -> None:
    agent = Agent([("X to 1", "X = 3.0", "X = 1.0")])
    with open_loop(slow_repo, agent) as loop:
        base, first = loop.optimize(n=2)
        assert first.prepared_during == base.number == 0 and first.status == Status.KEEP
        assert agent.contexts[0].in_flight[0].number == 0 and first.created_at < base.ended_at


def test_a_keep_re_applies_the_prepared_change_onto_the_new_best(slow_repo: Path) -> None:
    agent = Agent([("X to 1", "X = 3.0", "X = 1.0"), ("Y to 0", "Y = 2.0", "Y = 0.0")])
    with open_loop(slow_repo, agent) as loop:
        loop.baseline()
        first, second = loop.optimize(n=2)
        assert first.status == Status.KEEP and first.metric == pytest.approx(9.0)
        # #2 was made on the baseline while #1 ran; after #1's keep it runs on #1 with both changes.
        assert second.prepared_during == 1 and second.reapplied_onto == 1
        assert second.parent_sha == first.sha
        assert "X = 1.0" in second.content and "Y = 0.0" in second.content
        assert second.status == Status.KEEP and second.metric == pytest.approx(1.0)
        assert "-Y = 2.0" in second.diff and "X = 3.0" not in second.diff
        assert len(agent.contexts) == 2
        assert loop.results.attrs["reapplied"] == 1 and loop.results.attrs["conflict_rate"] == 0


def test_a_conflicting_prepared_change_is_recorded_and_proposed_afresh(slow_repo: Path) -> None:
    agent = Agent([("X to 1", "X = 3.0", "X = 1.0"), ("X to 2", "X = 3.0", "X = 2.0"),
                   ("Y to 0", "Y = 2.0", "Y = 0.0")])
    with open_loop(slow_repo, agent) as loop:
        loop.baseline()
        done = loop.optimize(n=2)
        rows = {e.number: e for e in loop.experiments}
        assert [e.number for e in done] == [1, 3]
        assert rows[1].status == Status.KEEP
        assert rows[2].status == Status.INVALID and rows[2].reapplied_onto == 1
        assert "conflicts with the new best #1" in rows[2].reason and rows[2].diff  # its change is kept
        # The fresh proposal saw the new best's file, and ran on it.
        assert "X = 1.0" in agent.contexts[2].source and rows[3].parent_sha == rows[1].sha
        assert rows[3].status == Status.KEEP and rows[3].metric == pytest.approx(1.0)
        stats = loop.results.attrs
        assert (stats["reapplied"], stats["conflicts"], stats["conflict_rate"]) == (1, 1, 1.0)


@pytest.mark.parametrize("force", [False, True])
def test_a_stop_during_a_prepared_proposal_records_it_and_the_next_optimize_runs_it(slow_repo: Path,
                                                                                     force: bool) -> None:
    asked, release = threading.Event(), threading.Event()

    def hold(context):
        if context.in_flight:
            asked.set()
            release.wait(60)

    agent = Agent([("Y to 5", "Y = 2.0", "Y = 5.0"), ("X to 1", "X = 3.0", "X = 1.0")], gate=hold)
    with open_loop(slow_repo, agent) as loop:
        loop.baseline()
        loop.start(n=5)
        assert asked.wait(60)
        loop.stop(force=force)
        release.set()
        loop.wait(60)
        assert not loop.running and loop.error is None
        rows = {e.number: e for e in loop.experiments}
        assert rows[1].status == (Status.INTERRUPTED if force else Status.DISCARD)
        assert rows[2].status == Status.PROPOSED and rows[2].prepared_during == 1  # recorded, not lost
        (taken,) = loop.optimize(n=1)
        assert taken.number == 2 and taken.status == Status.KEEP and len(agent.contexts) == 2


def test_the_cost_cap_counts_prepared_proposals(slow_repo: Path) -> None:
    agent = Agent([("Y to 5", "Y = 2.0", "Y = 5.0"), ("X to 1", "X = 3.0", "X = 1.0"), ("Y to 0", "Y = 2.0", "Y = 0.0"),
                   ("X to 2", "X = 3.0", "X = 2.0")], cost=0.1)
    finished = []
    with open_loop(slow_repo, agent, max_cost_usd=0.25) as loop:
        loop.subscribe(lambda ev: finished.append(ev.message) if ev.kind == EventKind.LOOP_FINISHED else None)
        loop.baseline()
        loop.optimize(n=10)
        # Asked 3 times: #1, #2 (prepared during #1), #3 (prepared during #2, at $0.20 < $0.25); the 4th ask,
        # at $0.30, is refused by the cap, and the run ends there.
        assert len(agent.contexts) == 3 and "cost limit" in finished[-1]
        assert loop.total_cost_usd == pytest.approx(0.3)
        assert sum(e.cost_usd for e in Store(loop.store.path).experiments("t")) == pytest.approx(0.3)


def test_auto_overlaps_only_a_slow_agent(slow_repo: Path) -> None:
    # 0.1 s is over 2 % of a 1 s run, but under half a second: not worth losing sight of the running result
    # (the second edit builds on the first, like a queue's: prepared beside the first it would not apply; a
    # loaded machine once made a queue agent that slow and the CLI test of the queue lost its last experiment)
    fast = Agent([("X to 2", "X = 3.0", "X = 2.0"), ("X to 1", "X = 2.0", "X = 1.0")], delay_s=0.1)
    with open_loop(slow_repo, fast, tag="fast", lookahead="auto") as loop:
        loop.baseline()
        loop.optimize(n=2)
        assert [e.prepared_during for e in loop.experiments] == [None, None, None]
        assert [e.status for e in loop.experiments] == [Status.KEEP] * 3
    slow = Agent([("X to 1", "X = 3.0", "X = 1.0"), ("Y to 0", "Y = 2.0", "Y = 0.0"),
                  ("X to 2", "X = 1.0", "X = 2.0")], delay_s=0.6)
    with open_loop(slow_repo, slow, tag="slow", lookahead="auto") as loop:
        loop.baseline()
        loop.optimize(n=3)
        # The first proposal is timed in the open (0.6 s > 2 % of a 1 s run, and > 0.5 s); then they overlap.
        assert [e.prepared_during for e in loop.experiments] == [None, None, 1, 2]


def test_lookahead_0_never_overlaps(slow_repo: Path) -> None:
    agent = Agent([("X to 1", "X = 3.0", "X = 1.0"), ("Y to 0", "Y = 2.0", "Y = 0.0")], delay_s=0.3)
    with open_loop(slow_repo, agent, lookahead=0) as loop:
        loop.baseline()
        loop.optimize(n=2)
        assert [e.prepared_during for e in loop.experiments] == [None, None, None]
        assert all(ctx.in_flight == () for ctx in agent.contexts)


KILLER = textwrap.dedent("""\
    import sys
    from autoresearch_nb import Loop, Proposal, Edit
    class A:
        name = "a"
        def __init__(self):
            self.steps = [("slow", "SLEEP = 1.0", "SLEEP = 60.0"), ("X to 1", "X = 3.0", "X = 1.0")]
        def propose(self, context):
            desc, search, replace = self.steps.pop(0)
            return Proposal(desc, edits=(Edit(search, replace),))
    loop = Loop.open(sys.argv[1], tag="k", agent=A(), metric="score", time_budget_s=5, timeout_s=120,
                     noise_repeats=1, lookahead=1)
    loop.baseline()
    print("BASELINE_DONE", flush=True)
    loop.optimize(n=5)
""")


def rows_when(db: Path, tag: str, ready, timeout: float = 60.0) -> list:
    """The run's rows, read by another connection, once ``ready(rows)`` holds."""
    deadline = time.monotonic() + timeout
    store = Store(db)
    try:
        while not ready(rows := store.experiments(tag)):
            if time.monotonic() > deadline:
                pytest.fail(f"never ready: {[(e.number, e.status.value) for e in rows]}")
            time.sleep(0.05)
    finally:
        store.close()
    return rows


def test_kill_9_while_a_prepared_proposal_waits_leaves_a_row_the_reopen_runs(slow_repo: Path,
                                                                             tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(KILLER)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(slow_repo)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "BASELINE_DONE"
    # Wait until #1 runs (its pid saved) and #2, prepared during it, waits.
    rows = rows_when(slow_repo / ".autoresearch" / "store.db", "k", lambda rows: len(rows) == 3 and rows[1].pid and
                     rows[1].status == Status.RUNNING and rows[2].status == Status.PROPOSED)
    child = rows[1].pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    agent = Agent([])  # asked for nothing: the reopened run takes the prepared proposal
    with open_loop(slow_repo, agent, tag="k") as loop:
        rows = loop.experiments
        assert [e.status for e in rows] == [Status.KEEP, Status.INTERRUPTED, Status.PROPOSED]
        assert rows[2].prepared_during == 1
        (taken,) = loop.optimize(n=1)
        assert taken.number == 2 and taken.status == Status.KEEP and taken.metric == pytest.approx(9.0)
        assert agent.contexts == []
    with pytest.raises(ProcessLookupError):  # the orphaned run was killed on reopen
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
    assert load_results(slow_repo, "k").attrs["prepared"] == 1


def test_a_cli_run_with_the_claude_agent_shows_the_duty_cycle_in_status(slow_repo: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_anthropic import FakeAnthropic, tool_use

    script = [tool_use({"description": "X to 1", "edits": [{"search": "X = 3.0", "replace": "X = 1.0"}]}),
              tool_use({"description": "Y to 0", "edits": [{"search": "Y = 2.0", "replace": "Y = 0.0"}]})]
    with FakeAnthropic(script) as api:
        env = {**os.environ, "ANTHROPIC_BASE_URL": api.url,
               "ANTHROPIC_API_KEY": "sk-ant-" + "fake-key-for-a-local-server"}
        cli = [sys.executable, "-m", "autoresearch_nb.cli"]
        run = subprocess.run([*cli, "run", "--tag", "c", "--repo", str(slow_repo), "--agent", "claude", "--metric",
                              "score", "--noise-repeats", "1", "--lookahead", "1", "--n", "3"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr
        assert len(api.requests) == 2  # one proposal prepared during the baseline, one during #1
    status = subprocess.run([*cli, "status", "--repo", str(slow_repo)], capture_output=True, text=True,
                            timeout=60).stdout
    attrs = load_results(slow_repo, "c").attrs
    assert attrs["prepared"] == 2 and attrs["reapplied"] == 1 and attrs["conflicts"] == 0
    assert f"duty {100 * attrs['duty_cycle']:.1f}%" in status and "conflicts 0/1" in status
    assert f"duty cycle: {100 * attrs['duty_cycle']:.1f}%" in run.stdout


class WarmAgent(Agent):
    """A fast agent with a ``warm()`` that records when it ran."""

    def warm(self) -> None:
        self.log.append(("warm", ()))


def test_no_idle_start_the_first_proposal_is_made_during_the_baselines_noise_repeats(slow_repo: Path) -> None:
    # lookahead 'auto' with a fast agent: nothing is measured yet, so before this rule the first proposal waited
    # for the whole baseline (its three runs of a second each); now it is asked while the repeats run, after
    # warm(), and the floor (the end of the repeats) comes a second or more later by construction
    log: list = []
    asked_at: list[float] = []
    agent = WarmAgent([("x down", "X = 3.0", "X = 2.0")], log, gate=lambda context: asked_at.append(time.monotonic()))
    with Loop.open(slow_repo, tag="idle", agent=agent, **{**FAST, "noise_repeats": 3, "noise_k": 2.0,
                                                          "lookahead": "auto"}) as loop:
        events: list = []
        loop.subscribe(lambda e: events.append((e.kind, e.purpose, time.monotonic())))
        loop.optimize(n=2)
        base, first = loop.experiments[:2]
    assert base.status == Status.KEEP and len(base.runs) == 3
    assert first.prepared_during == 0 and first.status in (Status.KEEP, Status.DISCARD)
    assert log[:2] == [("warm", ()), ("asked", (0,))]  # warmed first, then asked with the baseline in flight
    floor = next(t for kind, _, t in events if kind == EventKind.NOISE_FLOOR)
    assert len(asked_at) == 1 and asked_at[0] < floor
