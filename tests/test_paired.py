# python -m pytest tests/test_paired.py -q
"""The paired sequential rule: the pure policy (autoresearch_nb.paired) on scripted numbers, then the loop under
it on synthetic targets whose every value is known in advance (no test depends on a training's speed).

Targets: ``val_bpb = 1 + EFFECT + SHARED * g(seed) + OWN * g(SALT, seed)``: ``g(seed)`` is what a seed does to
every version of the file alike, ``g(SALT, seed)`` what it does to this version alone (a SALT change is a null
change, like a seed change in train.py). ``SHARED = 0`` is tests/test_loop_noise.py's target (ρ = 0).
"""
from __future__ import annotations

import math
import random
import re
import statistics
from pathlib import Path

import pytest
from conftest import make_repo

from autoresearch_nb import Loop, Proposal, QueueExhausted, Status
from autoresearch_nb import paired
from autoresearch_nb.noise import t_quantile

SHARED, OWN = 0.01, 0.002   # ρ = 0.96
TRAIN = '''"""Synthetic target with a seed effect shared across versions."""
import os
import random

EFFECT = 0.0
SALT = 0
FIXED_SEED = None

seed = int(os.environ.get("AUTORESEARCH_SEED", "42")) if FIXED_SEED is None else FIXED_SEED
shared = random.Random(f"shared/{{seed}}").gauss(0.0, {shared!r})
own = random.Random(f"{{SALT}}/{{seed}}").gauss(0.0, {own!r})
print("---")
print(f"val_bpb: {{1.0 + EFFECT + shared + own:.12f}}")
'''


def target(shared: float = SHARED, own: float = OWN) -> str:
    return TRAIN.format(shared=shared, own=own)


def value(salt: int, effect: float, seed: int, shared: float = SHARED, own: float = OWN) -> float:
    """What the synthetic train.py prints (the same arithmetic)."""
    v = 1.0 + effect + random.Random(f"shared/{seed}").gauss(0.0, shared) + random.Random(f"{salt}/{seed}").gauss(0.0, own)
    return float(f"{v:.12f}")


class Scripted:
    """Proposes (salt, effect_delta[, fixed_seed]) changes in order; the effect adds to the file's EFFECT."""

    name = "scripted"

    def __init__(self, changes) -> None:
        self.changes = list(changes)

    def propose(self, context) -> Proposal:
        if not self.changes:
            raise QueueExhausted("no more changes")
        salt, delta, *fixed = self.changes.pop(0)
        effect = float(re.search(r"^EFFECT = (.*)$", context.source, re.M).group(1)) + delta
        source = re.sub(r"^SALT = .*$", f"SALT = {salt}", context.source, flags=re.M)
        source = re.sub(r"^EFFECT = .*$", f"EFFECT = {effect!r}", source, flags=re.M)
        if fixed:
            source = re.sub(r"^FIXED_SEED = .*$", f"FIXED_SEED = {fixed[0]}", source, flags=re.M)
        return Proposal(f"salt {salt}, effect {delta:+g}", content=source)


def open_loop(repo: Path, changes=(), tag: str = "p", **config) -> Loop:
    return Loop.open(repo, tag=tag, agent=Scripted(changes), time_budget_s=10, **config)


# -- the pure policy -----------------------------------------------------------------------------------------
def test_floor_pools_differences_within_candidates_and_falls_back_to_root_two_sigma():
    f = paired.floor([[0.0, 0.2], [1.0, 1.2, 1.1], [5.0]], single_sigma=0.5, single_df=2)
    within = (0.02 + 0.02) / 3  # sums of squares 0.02 and 0.02 over 1 + 2 degrees of freedom
    assert f.source == "pairs" and f.df == 3 and f.pairs == 5 and f.sigma == pytest.approx(math.sqrt(within))
    fallback = paired.floor([[0.0, 0.2]], single_sigma=0.5, single_df=2)  # 1 df of pairs: too few
    assert fallback.source == "single" and fallback.sigma == pytest.approx(0.5 * math.sqrt(2)) and fallback.df == 2
    assert paired.floor([], None, 0) is None and paired.floor([], 0.0, 2).sigma == 0  # identical repeats


def test_a_keep_needs_two_paired_seeds_and_the_bar_is_a_t_quantile_of_the_floor():
    f = paired.DiffFloor(0.01, 10, 11, "pairs")
    one = paired.judge([-0.1], f)  # t = 10, far past the bar: still one more seed
    assert one.verdict == "confirm" and "1 paired seed" in one.reason
    two = paired.judge([-0.1, -0.1], f)
    bar = t_quantile(1 - paired.ALPHA / paired.MAX_SEEDS, 11)  # the floor's 10 df + the candidate's 1
    assert two.verdict == "keep" and two.threshold == pytest.approx(bar * two.noise_sigma / math.sqrt(2))
    assert "2 paired seeds" in two.reason and "t = +" in two.reason


def test_an_uncertain_floor_raises_the_bar():
    strong = paired.judge([-0.02, -0.025], paired.DiffFloor(0.01, 40, 41, "pairs"))
    weak = paired.judge([-0.02, -0.025], paired.DiffFloor(0.01, 2, 3, "pairs"))
    assert strong.verdict == "keep" and weak.verdict != "keep" and weak.threshold > strong.threshold


def test_a_clearly_worse_candidate_stops_after_one_run_and_a_borderline_one_continues():
    f = paired.DiffFloor(0.01, 20, 21, "pairs")
    assert paired.judge([+0.01], f).verdict == "discard"        # t = -1 < the futility line
    assert paired.judge([-0.005], f).verdict == "confirm"       # t = 0.5: another seed
    cap = paired.judge([-0.005] * paired.MAX_SEEDS, f)           # never clear by the cap: discarded
    assert cap.verdict == "discard" and "within the noise" in cap.reason


def test_differences_that_spread_more_than_the_floor_are_judged_on_their_own_spread():
    f = paired.DiffFloor(0.001, 30, 31, "pairs")
    d = paired.judge([-0.05, 0.01, -0.04], f)  # mean -0.027, but these do not follow the seed as pairs do
    assert d.verdict != "keep" and "its own spread" in d.reason and d.noise_sigma > 0.01


def test_a_candidate_with_one_number_at_every_seed_is_discarded_however_good():
    step = paired.next_step({42: 1.5, 43: 1.5}, {42: 2.0, 43: 2.1}, paired.DiffFloor(0.01, 20, 21, "pairs"))
    assert step.action == "decide" and step.decision.verdict == "discard" and "ignores its seed" in step.decision.reason
    deterministic = paired.next_step({42: 1.5, 43: 1.5}, {42: 2.0, 43: 2.0}, paired.DiffFloor(0.0, 2, 0, "single"))
    assert deterministic.decision.verdict == "keep"  # nothing moves with the seed here: the plain rule


def test_next_step_pairs_with_the_best_runs_it_at_a_missing_seed_and_reuses_its_runs():
    f = paired.DiffFloor(0.01, 20, 21, "pairs")
    best = {42: 2.0, 43: 2.1}
    assert paired.next_step({44: 1.9}, best, f) == paired.Step("best", 44)
    step = paired.next_step({42: 1.995}, best, f)
    assert step.action == "candidate" and step.seed == 43        # a seed the best already has
    step = paired.next_step({42: 1.995, 43: 2.095}, best, f)
    assert step.action == "candidate" and step.seed == 44        # none left: a new one (the best follows)
    assert paired.next_step({42: 1.9, 43: 2.0}, best, f).decision.verdict == "keep"


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_null_changes_are_kept_at_most_at_the_stated_rate(rho):
    """Through the policy with the benchmark's world model: nulls kept <= alpha (scripted numbers, 3000 nulls)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from decision_power import World, paired_rule

    kept = 0
    total = 0
    for k in range(50):
        out = paired_rule(World(rho, random.Random(k)), [0.0] * 60, paired.ALPHA, paired.MAX_SEEDS,
                          paired.FUTILITY)
        kept += sum(keep for _, keep, _ in out)
        total += len(out)
    assert kept / total <= paired.ALPHA


# -- the loop under the paired rule (the default) ------------------------------------------------------------
def test_the_paired_rule_is_the_default_and_keeps_a_gain_the_unpaired_rule_misses(tmp_path):
    gain = -0.006  # 0.6 of the seed's σ: smaller than the baseline's spread, 3σ of a paired difference
    nulls = [(s, 0.0) for s in range(1, 4)]
    changes = [*nulls, (9, gain)]
    repo = make_repo(tmp_path / "t", {"train.py": target()})
    with open_loop(repo, changes, tag="pair") as loop:
        assert loop.config.decision == "paired"
        loop.optimize()
        exps = loop.experiments
    with open_loop(repo, changes, tag="unpair", decision="unpaired") as loop:
        loop.optimize()
        unpaired = loop.experiments
    real = exps[-1]
    assert real.status == Status.KEEP and "paired seeds" in real.reason, real.reason
    assert unpaired[-1].status == Status.DISCARD  # the seed's spread drowns it when runs are not paired
    assert [e.status for e in exps[1:-1]] == [Status.DISCARD] * 3
    # the evidence: every run at a seed the baseline has, the metric the baseline's plus the mean difference
    base = exps[0]
    runs = dict(zip(real.seeds, real.runs))
    assert real.seeds[0] == 42 and all(s in base.seeds for s in real.seeds)
    assert runs == {s: pytest.approx(value(9, gain, s)) for s in real.seeds}
    diffs = [runs[s] - dict(zip(base.seeds, base.runs))[s] for s in real.seeds]
    assert real.metric == pytest.approx(base.metric + statistics.mean(diffs))


def test_the_best_runs_a_missing_seed_once_and_every_later_candidate_reuses_it(tmp_path):
    repo = make_repo(tmp_path / "t", {"train.py": target()})
    changes = [(s, -0.0015) for s in range(1, 7)]  # borderline: they go to the cap of paired seeds
    with open_loop(repo, changes, max_seeds=5) as loop:
        loop.optimize()
        exps = loop.experiments
    base = exps[0]
    assert len(base.seeds) == len(set(base.seeds)) and {42, 43, 44} <= set(base.seeds)
    assert max(len(e.runs) for e in exps[1:]) >= 4, [e.seeds for e in exps]  # someone needed seed 45 or later
    extra = [s for s in base.seeds if s > 44]
    assert extra and all(s in base.seeds for e in exps[1:] for s in e.seeds if s > 44)
    # the baseline's paired runs are its own runs (logs <number>.<i>.log), its metric as decided
    assert base.metric == pytest.approx(statistics.mean(base.runs[:3]))


def test_a_seed_change_in_train_py_is_never_kept(tmp_path):
    """A candidate that fixes its own seed gives one number at every seed: its differences follow the best's
    seeds, not the change. Its first difference looks like a gain the floor would keep on one draw."""
    repo = make_repo(tmp_path / "t", {"train.py": target()})
    nulls = [(s, 0.0) for s in range(1, 5)]
    fixed = 7
    while value(0, 0.0, fixed) - value(0, 0.0, 42) > -2 * SHARED:  # a lucky seed: far better than seed 42
        fixed += 1
    with open_loop(repo, [*nulls, (0, 0.0, fixed)]) as loop:
        loop.optimize()
        exps = loop.experiments
    cheat = exps[-1]
    assert cheat.runs[0] == pytest.approx(value(0, 0.0, fixed))
    assert cheat.status == Status.DISCARD and "ignores its seed" in cheat.reason, cheat.reason
    assert len(set(cheat.runs)) == 1 and len(cheat.runs) == 2


def test_the_pooled_floor_is_kept_across_a_resume(tmp_path):
    repo = make_repo(tmp_path / "t", {"train.py": target()})
    with open_loop(repo, [(s, -0.0015) for s in range(1, 4)]) as loop:
        loop.optimize()
        before = loop.noise["pairs"]
    assert before is not None and before["df"] >= paired.MIN_PAIRS_DF
    with open_loop(repo, [(11, -0.0015)]) as loop:
        assert loop.noise["pairs"] == before
        loop.optimize()
        last = loop.experiments[-1]
        after = loop.noise["pairs"]
    if len(last.runs) >= 2:
        assert after["pairs"] == before["pairs"] + len(last.runs)
    assert f"from {before['pairs']}" in last.reason or f"from {before['pairs'] + len(last.runs)}" in last.reason


def test_the_evidence_reaches_the_dataframe_and_the_console(tmp_path):
    import io
    from autoresearch_nb.console import ConsolePrinter

    repo = make_repo(tmp_path / "t", {"train.py": target()})
    out = io.StringIO()
    with open_loop(repo, [(1, -0.01)]) as loop:
        loop.subscribe(ConsolePrinter.for_loop(loop, out))
        loop.optimize()
        df = loop.results
        exp = loop.experiments[-1]
    row = df[df["number"] == exp.number].iloc[0]
    assert exp.status == Status.KEEP and row["n_runs"] == len(exp.runs) >= 2 and "paired seeds" in row["reason"]
    line = next(x for x in out.getvalue().splitlines() if x.startswith(f"#{exp.number} ") and "keep" in x)
    assert f"({len(exp.runs)} runs)" in line and "paired seeds" in line and "t = +" in line


def test_the_cli_runs_the_paired_rule_and_prints_its_evidence(tmp_path):
    import subprocess
    import sys

    repo = make_repo(tmp_path / "t", {"train.py": target(), "queue.toml": (
        '[[experiment]]\ndescription = "a real gain"\nedits = [{ search = "EFFECT = 0.0", replace = "EFFECT = -0.01" }]\n'
        '[[experiment]]\ndescription = "a null change"\nedits = [{ search = "SALT = 0", replace = "SALT = 5" }]\n')})
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "c", "--repo", str(repo),
                        "--agent", "queue", "--time-budget", "5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("#") and "running" not in x]
    gain = next(x for x in lines if "a real gain" in x)
    assert " keep " in gain and "paired seeds" in gain and "runs)" in gain
    assert " discard " in next(x for x in lines if "a null change" in x)
