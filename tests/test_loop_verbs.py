# python -m pytest tests/test_loop_verbs.py -q
"""The rule for verbs: a verb already applied returns the stored state; an impossible order raises StateError.

Also issue 16's notebook bugs (propose before the baseline, a button and the next cell, a Stop during the
baseline's noise repeats) and issue 12's non-finite metrics, each through a real loop on a real subprocess.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEMO_TARGET, git, make_repo

from autoresearch_nb import EventKind, Loop, Proposal, Status
from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.errors import StateError
from autoresearch_nb.records import Experiment

FAST = dict(metric="score", time_budget_s=5, timeout_s=30, noise_repeats=1, noise_k=0)


class Queue:
    """Proposes whole files made from the demo target by (search, replace) pairs, then runs out."""

    name = "queue"

    def __init__(self, *changes: tuple[str, str]) -> None:
        self.changes = list(changes)
        self.told: list[Experiment] = []

    def propose(self, context) -> Proposal:
        if not self.changes:
            raise QueueExhausted("no more")
        search, replace = self.changes.pop(0)
        return Proposal(f"{search} -> {replace}", content=context.source.replace(search, replace))

    def tell(self, exp: Experiment) -> None:
        self.told.append(exp)


def kinds(loop: Loop) -> list[EventKind]:
    seen: list[EventKind] = []
    loop.subscribe(lambda e: seen.append(e.kind))
    return seen


# -- impossible orders ---------------------------------------------------------------------------------------

def test_propose_before_the_baseline_is_a_state_error(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        with pytest.raises(StateError, match="baseline"):
            loop.propose()
        assert loop.experiments == []


def test_running_what_was_never_proposed_is_a_state_error(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(), **FAST) as loop:
        loop.baseline()
        ghost = Experiment(number=7, tag="t", status=Status.PROPOSED, content=DEMO_TARGET)
        with pytest.raises(StateError, match="never proposed"):
            loop.run(ghost)
        with pytest.raises(StateError, match="never proposed"):
            loop.decide(ghost)
        assert len(loop.experiments) == 1


def test_deciding_a_proposal_that_never_ran_is_a_state_error(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        loop.baseline()
        exp = loop.propose()
        with pytest.raises(StateError, match="has not run"):
            loop.decide(exp)
        assert loop.store.get("t", exp.number).status == Status.PROPOSED


def test_editing_an_experiment_that_ran_is_a_state_error(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        loop.baseline()
        exp = loop.decide(loop.run(loop.propose()))
        with pytest.raises(StateError, match="only a proposal"):
            loop.edit(exp, DEMO_TARGET.replace("Y = 2.0", "Y = 0.0"))



def test_an_edited_proposal_describes_what_the_edited_file_changes(repo: Path) -> None:
    # Issue 26, bug 5: the edit kept the agent's description ("X = 3.0 -> X = 1.0 (edited)") for other content.
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        loop.baseline()
        exp = loop.propose()
        edited = loop.edit(exp, DEMO_TARGET.replace("X = 3.0", "X = 2.5").replace("Y = 2.0", "Y = 0.5"))
        assert edited.description == "X 3.0 -> 2.5, Y 2.0 -> 0.5 (edited)"
        assert loop.store.get("t", exp.number).description == edited.description
        named = loop.edit(exp, DEMO_TARGET.replace("X = 3.0", "X = 2.0"), description="my own words")
        assert named.description == "my own words"  # a description the user gives wins

# -- a verb already applied returns the stored state (issue 16 bug 2) --------------------------------------------

def test_run_and_decide_again_return_the_stored_experiment(repo: Path) -> None:
    agent = Queue(("X = 3.0", "X = 1.0"))
    with Loop.open(repo, tag="t", agent=agent, **FAST) as loop:
        loop.baseline()
        stale = loop.propose()                # the notebook's `exp`, kept in the kernel
        decided = loop.decide(loop.run(stale))  # what the Approve button did meanwhile
        seen = kinds(loop)
        again = loop.run(stale)
        assert again == decided and again.status == Status.KEEP
        assert loop.decide(stale) == decided and loop.decide(again) == decided
        assert seen == []  # nothing ran, nothing was recorded twice
        assert [e.number for e in agent.told].count(decided.number) == 1
        assert len(loop.experiments) == 2


def test_a_crash_is_recorded_once_however_often_decide_is_called(repo: Path) -> None:
    agent = Queue(("X = 3.0", "X = 3.0\nraise SystemExit(3)"))
    with Loop.open(repo, tag="t", agent=agent, **FAST) as loop:
        loop.baseline()
        crashed = loop.run(loop.propose())
        assert crashed.status == Status.CRASH
        first = loop.decide(crashed)
        seen = kinds(loop)
        assert loop.decide(crashed) == first and seen == []
        assert sum(1 for line in loop.results_tsv.read_text().splitlines() if "crash" in line) == 1


def test_rejecting_a_decided_experiment_returns_it(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        loop.baseline()
        exp = loop.propose()
        decided = loop.decide(loop.run(exp))
        assert loop.reject(exp) == decided and loop.store.get("t", exp.number).status == Status.KEEP
        assert loop.run(loop.reject(decided)) == decided



def test_a_rejected_proposal_reads_rejected_in_results_the_table_and_the_console(repo: Path) -> None:
    # Issue 26, bug 6: the dashboard said "rejected", loop.results and the analysis counts "invalid".
    import io

    from autoresearch_nb.console import ConsolePrinter
    from autoresearch_nb.dashboard import plotdata

    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0"), ("X = 3.0", "X = 2.0")), **FAST) as loop:
        loop.baseline()
        out = io.StringIO()
        loop.subscribe(ConsolePrinter(out, metric="score"))
        first = loop.reject(loop.propose())
        second = loop.reject(loop.propose(), "too risky")  # the user's own words keep the word in front
        assert first.status == second.status == Status.INVALID  # stored as a proposal that never ran
        assert second.reason == "rejected by the user: too risky"
        df = loop.results
        assert list(df["status"]) == ["keep", "rejected", "rejected"]
        assert df["status"].value_counts().to_dict() == {"rejected": 2, "keep": 1}
        assert list(plotdata.table(df)["status"]) == ["rejected", "rejected", "keep"]
        assert "invalid" not in out.getvalue() and out.getvalue().count("rejected ") >= 2


def test_a_notebook_cell_gets_short_answers_from_an_experiment_start_and_stop(repo: Path) -> None:
    # Issue 26's small things: the Experiment repr printed all of train.py, loop.start() a Thread object, and
    # loop.stop() said nothing.
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        base = loop.baseline()
        assert repr(base).startswith("<Experiment #0 keep metric=") and repr(base).endswith("'baseline'>")
        assert "X = 3.0" in (base.content or "") and "X = 3.0" not in repr(base)
        said: list[str] = []
        loop.subscribe(lambda e: said.append(e.message) if e.kind == EventKind.MESSAGE else None)
        thread = loop.start(n=1)
        assert repr(thread).startswith("<autoresearch-t ") and "loop.stop() ends it" in repr(thread)
        loop.stop()
        loop.wait(60)
        assert "finished" in repr(thread)
        assert any(m.startswith("stopping after the running one") for m in said)

# -- the baseline measures the base commit (issue 16 bug 1) --------------------------------------------------------

def test_the_baseline_measures_the_base_commit_even_after_a_kept_experiment_elsewhere(repo: Path) -> None:
    with Loop.open(repo, tag="t", agent=Queue(("X = 3.0", "X = 1.0")), **FAST) as loop:
        base = loop.baseline()
        assert base.metric == pytest.approx(13.0) and base.sha == git(repo, "rev-parse", "main")
        assert loop.baseline() == base  # once measured, returned as stored


def test_a_stop_during_the_baseline_repeats_leaves_a_partial_floor_that_a_resume_completes(repo: Path) -> None:
    noisy = dict(FAST, noise_repeats=3, noise_k=2.0)
    with Loop.open(repo, tag="t", agent=Queue(), **noisy) as loop:
        loop.subscribe(lambda e: e.kind == EventKind.REPEAT_STARTED and e.repeat == 2 and loop.stop(force=True))
        stopped = loop.baseline()
        assert stopped.status == Status.INTERRUPTED and len(stopped.runs) == 2 and stopped.seeds == [42, 43]
        assert loop.noise is None
    with Loop.open(repo, tag="t", agent=Queue(), **noisy) as loop:
        repeats: list[int] = []
        loop.subscribe(lambda e: e.kind == EventKind.REPEAT_STARTED and repeats.append(e.repeat))
        done = loop.baseline()
        assert repeats == [2]  # only the missing repeat ran
        assert done.status == Status.KEEP and done.seeds == [42, 43, 44] and len(done.runs) == 3
        assert loop.noise["n"] == 3 and [e.number for e in loop.experiments] == [0]


# -- non-finite metrics (issue 12 fault 6) -------------------------------------------------------------------------

@pytest.mark.parametrize("value, reason", [("inf", "score is inf (not finite)"),
                                           ("1e309", "score is inf (not finite)"),
                                           ("-inf", "score is -inf (not finite)"),
                                           ("nan", "score is NaN")])
def test_a_non_finite_metric_is_a_crash_with_its_reason(tmp_path: Path, value: str, reason: str) -> None:
    target = "X = 1\nprint('---')\nprint('score: ' + ('%s' if X else '1'))\n" % value
    root = make_repo(tmp_path / "r", {"train.py": target})
    with Loop.open(root, tag="t", agent=Queue(("X = 1", "X = 0")), **FAST) as loop:
        base = loop.baseline()
        assert base.status == Status.CRASH and base.reason == reason and base.metric is None
        better = loop.step()
        assert better.status == Status.KEEP and better.metric == 1.0  # inf was never "the best"
