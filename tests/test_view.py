# python -m pytest tests/test_view.py -q
"""The read model: one run's experiments, best and results read straight from the store, with no lock."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from autoresearch_nb import Edit, Loop, Proposal, Status
from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.errors import AutoresearchError
from autoresearch_nb.records import Experiment
from autoresearch_nb.view import RunView, best_of, load_results

SETTINGS = dict(metric="score", time_budget_s=5, noise_k=0)


class Steps:
    """Proposes fixed edits of the demo target, then runs out."""

    name = "steps"

    def __init__(self, *steps: tuple[str, str]) -> None:
        self.steps = list(steps)

    def propose(self, context):
        if not self.steps:
            raise QueueExhausted("no more")
        search, replace = self.steps.pop(0)
        return Proposal(f"{search} -> {replace}", edits=(Edit(search, replace),))


def run(repo: Path, tag: str, *steps: tuple[str, str]) -> None:
    with Loop.open(repo, tag=tag, agent=Steps(*steps), **SETTINGS) as loop:
        loop.optimize()


def test_best_of_takes_the_best_kept_metric_and_the_earliest_on_a_tie() -> None:
    rows = [Experiment(0, "t", Status.KEEP, metric=5.0), Experiment(1, "t", Status.DISCARD, metric=1.0),
            Experiment(2, "t", Status.KEEP, metric=3.0), Experiment(3, "t", Status.KEEP, metric=3.0),
            Experiment(4, "t", Status.CRASH)]
    assert best_of(rows).number == 2  # the discarded 1.0 is no best
    assert best_of(rows, maximize=True).number == 0
    assert best_of(rows[1:2]) is None


def test_view_reads_a_run_without_its_lock_and_agrees_with_the_loop(repo: Path) -> None:
    with Loop.open(repo, tag="a", agent=Steps(("X = 3.0", "X = 1.0"), ("Y = 2.0", "Y = 5.0")), **SETTINGS) as loop:
        loop.optimize()
        with RunView.open(repo, "a") as view:  # while the loop still holds the run open
            assert [e.status for e in view.experiments] == [Status.KEEP, Status.KEEP, Status.DISCARD]
            assert view.best.number == loop.best.number == 1 and view.best.metric == pytest.approx(9.0)
            assert list(view.results["status"]) == list(loop.results["status"])
            assert len(view.curve(1)) == len(loop.curve(1)) > 0
            with pytest.raises(KeyError):
                view.experiment(7)


def test_open_without_a_tag_takes_the_newest_run_and_load_results_reads_them_all(repo: Path) -> None:
    run(repo, "first", ("X = 3.0", "X = 2.0"))
    run(repo, "second")
    with RunView.open(repo) as view:
        assert view.tag == "second" and len(view.experiments) == 1
    both = load_results(repo)
    assert sorted(set(both["tag"])) == ["first", "second"] and len(both) == 3
    assert len(load_results(repo, "first")) == 2


def test_clear_errors_for_a_repo_without_runs_and_an_unknown_tag(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(AutoresearchError, match="no experiment store"):
        RunView.open(repo)
    run(repo, "only")
    with pytest.raises(AutoresearchError, match="no run tagged 'nope'.*runs: only"):
        load_results(repo, "nope")
    with pytest.raises(AutoresearchError, match="no run tagged 'nope'"):
        RunView.open(repo, "nope")
    assert git(repo, "status", "--porcelain") == ""  # reading never wrote into the user's checkout
