"""Near-miss combinations (autoresearch_nb.combine): which discards count, what is combined, when, and through
the real loop a combination of two near-misses that is kept where neither was."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import EditsAgent, make_repo

from autoresearch_nb import Loop, Status
from autoresearch_nb.combine import AGENT, combination, drought, near_misses
from autoresearch_nb.errors import ConfigError
from autoresearch_nb.records import Experiment

BASE = "A = 0\nB = 0\nC = 0\n"


def row(number: int, status: Status, content: str, metric: float | None, parent: str | None = "s0",
        sha: str | None = None, runs: list[float] | None = None, agent: str = "tuner") -> Experiment:
    return Experiment(number, "t", status, f"change {number}", parent_sha=parent, sha=sha or f"s{number}",
                      content=content, metric=metric, runs=runs or [], agent=agent)


def history(*rows: Experiment) -> list[Experiment]:
    return [row(0, Status.KEEP, BASE, 1.0, parent=None, agent="baseline"), *rows]


def test_a_near_miss_is_a_discard_whose_mean_beat_its_parent_largest_gain_first() -> None:
    h = history(row(1, Status.DISCARD, "A = 1\nB = 0\nC = 0\n", 0.99),
                row(2, Status.DISCARD, "A = 0\nB = 1\nC = 0\n", 0.98),
                row(3, Status.DISCARD, "A = 0\nB = 0\nC = 1\n", 1.01),          # worse: not a near-miss
                row(4, Status.CRASH, "A = 2\nB = 0\nC = 0\n", None),
                row(5, Status.PRUNED, "A = 3\nB = 0\nC = 0\n", 0.5),            # stopped early: no mean
                row(6, Status.DISCARD, "A = 4\nB = 0\nC = 0\n", 0.9, runs=[0.9, 0.9]))  # ignores its seed
    assert [(m.exp.number, round(m.gain, 6)) for m in near_misses(h)] == [(2, 0.02), (1, 0.01)]
    assert [m.exp.number for m in near_misses(h, maximize=True)] == [3]
    assert all(m.base == BASE for m in near_misses(h))


def test_no_combination_before_the_stretch_then_the_best_near_misses_together() -> None:
    h = history(row(1, Status.DISCARD, "A = 1\nB = 0\nC = 0\n", 0.99),
                row(2, Status.DISCARD, "A = 0\nB = 1\nC = 0\n", 0.98))
    assert combination(h, BASE, after=3) is None and combination(h, BASE, after=0) is None
    c = combination(h, BASE, after=2, metric="val_bpb")
    assert c is not None and c.content == "A = 1\nB = 1\nC = 0\n" and c.parts == (2, 1)
    assert c.description.startswith("combine near-misses #2 (change 2: val_bpb -0.02), #1 (change 1: val_bpb -0.01)")
    assert c.description.endswith("after 2 experiments without a keep")


def test_a_conflicting_near_miss_is_left_out_and_a_known_file_falls_back_to_fewer() -> None:
    h = history(row(1, Status.DISCARD, "A = 1\nB = 0\nC = 0\n", 0.97),
                row(2, Status.DISCARD, "A = 2\nB = 0\nC = 0\n", 0.98),   # A again, another value: conflicts
                row(3, Status.DISCARD, "A = 0\nB = 0\nC = 1\n", 0.99))
    c = combination(h, BASE, after=3)
    assert c is not None and c.parts == (1, 3) and c.content == "A = 1\nB = 0\nC = 1\n"
    tried = {"A = 1\nB = 0\nC = 1\n"}
    assert combination(h, BASE, after=3, known=lambda content: content in tried) is None  # #1 alone is #1's file
    tried.add("A = 1\nB = 0\nC = 0\n")
    assert combination(h, BASE, after=3, known=lambda content: content in tried) is None


def test_a_near_miss_of_an_older_best_gets_a_second_look_on_the_current_one() -> None:
    newer = "A = 0\nB = 5\nC = 0\n"
    h = history(row(1, Status.DISCARD, "A = 1\nB = 0\nC = 0\n", 0.99),
                row(2, Status.KEEP, newer, 0.95),
                row(3, Status.DISCARD, "A = 0\nB = 5\nC = 7\n", 0.96, parent="s2"),   # worse than #2
                row(4, Status.DISCARD, "A = 0\nB = 6\nC = 0\n", 0.97, parent="s2"))
    c = combination(h, newer, after=2, known=lambda content: False)
    assert c is not None and c.parts == (1,) and c.content == "A = 1\nB = 5\nC = 0\n"
    assert c.description.startswith("second look at near-miss #1")


def test_the_stretch_counts_decided_runs_since_the_last_keep_or_combination() -> None:
    h = history(row(1, Status.DISCARD, BASE.replace("A = 0", "A = 1"), 0.99),
                row(2, Status.INVALID, BASE, None),
                row(3, Status.DISCARD, BASE.replace("B = 0", "B = 1"), 0.99, agent=AGENT),
                row(4, Status.CRASH, BASE, None))
    assert drought(h) == 1
    assert drought(h[:3]) == 1 and drought(h[:1]) == 0


def test_combine_after_must_not_be_negative(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "X = 1\n"})
    with pytest.raises(ConfigError, match="combine_after"):
        Loop.open(repo, tag="t", agent="queue", combine_after=-1)


# -- through the loop: two changes each within the noise, together clearly better --------------------------------

TRAIN = textwrap.dedent('''\
    import os, random
    A = 0
    B = 0
    SALT = 5
    seed = int(os.environ.get("AUTORESEARCH_SEED", "42"))
    noise = random.Random(f"{A}/{B}/{SALT}/{seed}").gauss(0.0, 0.01)
    print("---")
    print(f"val_bpb: {1.0 - 0.004 * A - 0.004 * B - 0.05 * A * B + noise:.12f}")
''')
STEPS = [("A to 1", "A = 0", "A = 1"), ("B to 1", "B = 0", "B = 1")]  # each alone within the noise


def test_two_near_misses_combined_by_the_loop_are_kept_where_neither_was(tmp_path: Path) -> None:
    # The values are fixed by the seeds (SALT = 5 was picked so both changes alone come out near-misses).
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN})
    with Loop.open(repo, tag="t", agent=EditsAgent(STEPS), time_budget_s=10, combine_after=2,
                   lookahead=0) as loop:
        loop.optimize()
        exps = loop.experiments
        head = loop.workspace.read(loop.workspace.head())
    assert [(e.status, e.agent) for e in exps] == [(Status.KEEP, "baseline"), (Status.DISCARD, "edits"),
                                                   (Status.DISCARD, "edits"), (Status.KEEP, AGENT)]
    assert exps[1].metric < exps[0].metric and exps[2].metric < exps[0].metric  # both improved the mean
    assert exps[3].description.startswith("combine near-misses #") and {"#1", "#2"} <= set(
        re.findall(r"#\d", exps[3].description))
    assert "A = 1" in head and "B = 1" in head and exps[3].parent_sha == exps[0].sha


def test_combine_after_0_turns_it_off_the_agent_is_asked_after_any_stretch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN})
    with Loop.open(repo, tag="t", agent=EditsAgent(STEPS), time_budget_s=10, combine_after=0,
                   lookahead=0) as loop:
        loop.optimize()
        assert [e.agent for e in loop.experiments] == ["baseline", "edits", "edits"]
