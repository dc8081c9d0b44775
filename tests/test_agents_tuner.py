# python -m pytest tests/test_agents_tuner.py -q
"""The Optuna tuner: proposals inside the space, crashes told, resume, a non-ML target."""
from __future__ import annotations

import logging
import math
import random
import re
from pathlib import Path

import pytest

from autoresearch_nb.agents.base import Context, QueueExhausted
from autoresearch_nb.agents.space import discover
from autoresearch_nb.agents.tuner import TunerAgent
from autoresearch_nb.config import Config
from autoresearch_nb.edits import apply_edits, content_hash, unified_diff
from autoresearch_nb.errors import AgentError, ConfigError
from autoresearch_nb.records import Experiment, Status

TARGET = '''\
# Hyperparameters
LEARNING_RATE = 0.01
DEPTH = 4
WIDTH = 2**7
WARMUP_RATIO = 0.1
USE_NORM = True
ACTIVATION = "relu"  # choices: relu, gelu, tanh


def main():
    pass
'''
BEST = dict(LEARNING_RATE=0.003, DEPTH=7, WIDTH=2**9, WARMUP_RATIO=0.25, USE_NORM=False, ACTIVATION="gelu")
SPACE = discover(TARGET)


def bowl(content: str, rng: random.Random) -> float:
    v = SPACE.values(content)
    d = (math.log(v["LEARNING_RATE"] / BEST["LEARNING_RATE"]) / math.log(4)) ** 2
    d += ((v["DEPTH"] - BEST["DEPTH"]) / 3) ** 2 + (math.log2(v["WIDTH"] / BEST["WIDTH"]) / 2) ** 2
    d += ((v["WARMUP_RATIO"] - BEST["WARMUP_RATIO"]) / 0.2) ** 2
    d += 0.3 * (v["USE_NORM"] != BEST["USE_NORM"]) + {"relu": 0.3, "gelu": 0.0, "tanh": 0.6}[v["ACTIVATION"]]
    return 1.0 + 0.1 * d + rng.gauss(0, 0.005)


class MiniLoop:
    """Just enough of the loop: baseline, propose, apply, measure, keep or discard, tell."""

    def __init__(self, agent, source, metric, config, editable="target.py"):
        self.agent, self.metric, self.config, self.editable = agent, metric, config, editable
        self.source, self.history, self.best = source, [], None
        self.proposals: list = []

    def context(self, **kw) -> Context:
        return Context(program="", editable=self.editable, source=self.source, history=tuple(self.history),
                       config=self.config, best=self.best, **kw)

    def record(self, number, content, description, crash=False):
        m = None if crash else self.metric(content)
        if crash:
            status = Status.CRASH
        elif self.best is None or self.config.better(m, self.best.metric):
            status = Status.KEEP
        else:
            status = Status.DISCARD
        e = Experiment(number=number, tag="t", status=status, description=description, metric=m, content=content,
                       diff=unified_diff(self.source, content, self.editable), content_hash=content_hash(content))
        self.history.append(e)
        if status == Status.KEEP:
            self.best, self.source = e, content
        if hasattr(self.agent, "tell"):
            self.agent.tell(e)
        return e

    def run(self, n, crash_if=lambda p: False):
        self.record(0, self.source, "baseline")
        for i in range(1, n):
            p = self.agent.propose(self.context())
            assert p.error is None
            self.proposals.append(p)
            content = p.content if p.content is not None else apply_edits(self.source, p.edits)
            self.record(i, content, p.description, crash=crash_if(p))
        return self


def test_proposals_are_readable_edits_inside_the_bounds():
    rng = random.Random(0)
    loop = MiniLoop(TunerAgent(Config(editable="target.py"), Path(".")), TARGET, lambda c: bowl(c, rng),
                    Config(editable="target.py")).run(25)
    for e in loop.history[1:]:
        assert re.fullmatch(r"[A-Z_]+ \S+ -> \S+(, [A-Z_]+ \S+ -> \S+)*", e.description), e.description
        enc = SPACE.encoded(e.content)
        assert enc is not None, e.description  # every constant inside its distribution
        for p in SPACE:
            assert p.contains(enc[p.name])
    assert len({e.content_hash for e in loop.history}) == len(loop.history)  # no repeats
    assert loop.best.metric < loop.history[0].metric


def test_edits_apply_to_the_current_file():
    agent = TunerAgent(Config(editable="target.py"), Path("."))
    ctx = Context(program="", editable="target.py", source=TARGET, history=(), config=Config(editable="target.py"))
    p = agent.propose(ctx)
    assert p.edits and apply_edits(TARGET, p.edits) == p.content
    assert p.model == "optuna-probe" and p.usage.cost_usd == 0     # the first proposal is a one-dial probe
    assert TunerAgent(Config(editable="target.py"), Path("."), probes=False).propose(ctx).model == "optuna-tpe"


def test_resume_rebuilds_the_same_study_and_the_same_next_proposal():
    rng = random.Random(1)
    config = Config(editable="target.py", seed=7)
    live = TunerAgent(config, Path("."))
    loop = MiniLoop(live, TARGET, lambda c: bowl(c, rng), config).run(12, crash_if=lambda p: "DEPTH" in p.description)
    assert any(e.status == Status.CRASH for e in loop.history)
    ctx = loop.context()
    next_live = live.propose(ctx)
    resumed = TunerAgent(config, Path("."))          # a new process: nothing but the stored experiments
    next_resumed = resumed.propose(ctx)
    assert next_resumed.content == next_live.content and next_resumed.description == next_live.description

    def trials(study):
        return [(t.state, t.value, t.params) for t in study.trials if t.user_attrs.get("experiment") is not None]

    assert trials(resumed.study) == trials(live.study) and len(trials(resumed.study)) == 12


def test_crashes_are_told_with_the_worst_value_seen():
    rng = random.Random(2)
    config = Config(editable="target.py")
    agent = TunerAgent(config, Path("."))
    loop = MiniLoop(agent, TARGET, lambda c: bowl(c, rng), config).run(8, crash_if=lambda p: True)
    agent.propose(loop.context())
    crashed = [t for t in agent.study.trials if t.user_attrs.get("status") == "crash"]
    assert len(crashed) == 7 and all(t.value == loop.history[0].metric for t in crashed)


def test_only_rows_that_ran_and_carry_their_file_become_trials():
    config = Config(editable="target.py")
    lr = TARGET.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005")
    depth = TARGET.replace("DEPTH = 4", "DEPTH = 6")
    history = (
        Experiment(0, "t", Status.KEEP, "baseline", metric=1.5, content=TARGET),
        Experiment(1, "t", Status.DISCARD, "try a lower lr", metric=1.6, content=lr),
        Experiment(2, "t", Status.DISCARD, "DEPTH 4 -> 6", metric=1.7),  # no file: nothing to read
        Experiment(3, "t", Status.INVALID, "never ran", content=depth),
    )
    agent = TunerAgent(config, Path("."))
    agent.propose(Context(program="", editable="target.py", source=TARGET, history=history, config=config))
    got = {t.user_attrs["experiment"]: t.params for t in agent.study.trials if "experiment" in t.user_attrs}
    assert sorted(got) == [0, 1]
    assert got[1]["LEARNING_RATE"] == 0.005 and got[0]["DEPTH"] == 4


def test_a_wrong_sampler_or_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="sampler"):
        TunerAgent(Config(), sampler="grid")
    with pytest.raises(ConfigError, match="mode"):
        TunerAgent(Config(), mode="nearby")


def test_in_flight_and_earlier_files_are_not_proposed_again():
    config = Config(editable="t.py")
    src = "USE_A = True\n"
    agent = TunerAgent(config, Path("."))
    base = Experiment(0, "t", Status.KEEP, "baseline", metric=1.0, content=src)
    flying = Experiment(1, "t", Status.RUNNING, "USE_A True -> False", content="USE_A = False\n")
    with pytest.raises(QueueExhausted, match="exhausted"):
        agent.propose(Context(program="", editable="t.py", source=src, history=(base,), config=config,
                              in_flight=(flying,)))


def test_a_file_without_constants_is_a_clear_error():
    config = Config(editable="main.py")
    ctx = Context(program="", editable="main.py", source="def main():\n    return 1\n", history=(), config=config)
    with pytest.raises(AgentError, match="no tunable constants in main.py"):
        TunerAgent(config, Path(".")).propose(ctx)


NON_ML = '''\
"""Not machine learning: estimate pi by quadrature. Higher score = more correct digits."""
import logging
import math

# Hyperparameters
N_STEPS = 16
METHOD = "left"  # choices: left, midpoint, simpson
CLAMP = False


def score():
    f = lambda x: 4.0 / (1.0 + x * x)
    h = 1.0 / N_STEPS
    if METHOD == "left":
        est = h * sum(f(i * h) for i in range(N_STEPS))
    elif METHOD == "midpoint":
        est = h * sum(f((i + 0.5) * h) for i in range(N_STEPS))
    else:
        n = N_STEPS + N_STEPS % 2
        h = 1.0 / n
        est = h / 3 * sum((1 if i in (0, n) else 4 if i % 2 else 2) * f(i * h) for i in range(n + 1))
    return -math.log10(abs(est - math.pi) + 1e-16)
'''


def test_works_on_a_non_ml_target_and_maximizes():
    def run(content):
        ns: dict = {}
        exec(compile(content, "quad.py", "exec"), ns)
        return ns["score"]()

    config = Config(editable="quad.py", metric="score", direction="maximize", command="python quad.py")
    loop = MiniLoop(TunerAgent(config, Path(".")), NON_ML, run, config, editable="quad.py").run(15)
    assert loop.best.metric > loop.history[0].metric + 2   # at least two more correct digits
    assert "METHOD" in discover(NON_ML).names and "score" not in discover(NON_ML).names


def test_random_sampler_and_global_mode_also_work():
    def proposals(**kw) -> list:
        rng = random.Random(3)
        config = Config(editable="target.py")
        return MiniLoop(TunerAgent(config, Path("."), **kw), TARGET, lambda c: bowl(c, rng), config).run(8).proposals

    def changed(p) -> int:  # constants one proposal moves: its description reads "A x -> y, B u -> v"
        return p.description.count(", ") + 1

    default = proposals()
    assert "probe" in {p.meta["strategy"] for p in default} and max(map(changed, default)) <= 2
    assert {p.meta["strategy"] for p in proposals(sampler="random")} == {"random"}  # no probes, no TPE
    assert max(map(changed, proposals(mode="global"))) >= 3  # global TPE moves many dials at once


def test_each_run_tag_gets_its_own_search_path_unless_seeded():
    def first_proposal(tag: str, config: Config) -> str:
        base = Experiment(number=0, tag=tag, status=Status.KEEP, description="baseline", metric=1.5,
                          content=TARGET, content_hash=content_hash(TARGET))
        ctx = Context(program="", editable="target.py", source=TARGET, history=(base,), config=config, best=base)
        return TunerAgent(config, Path(".")).propose(ctx).content

    unseeded = Config(editable="target.py")
    paths = {first_proposal(tag, unseeded) for tag in ("nov27", "nov28", "nov29", "dec01")}
    assert len(paths) > 1                                                   # campaigns differ
    assert first_proposal("nov27", unseeded) == first_proposal("nov27", unseeded)  # a resume repeats its own
    seeded = Config(editable="target.py", seed=3)
    assert first_proposal("a", seeded) == first_proposal("b", seeded)      # an explicit seed wins


# The bowl as a real target the loop runs: the same score, printed by the file itself, without noise.
BOWL_TARGET = TARGET.replace("def main():\n    pass\n", """import math
d = (math.log(LEARNING_RATE / 0.003) / math.log(4)) ** 2 + ((DEPTH - 7) / 3) ** 2
d += (math.log2(WIDTH / 512) / 2) ** 2 + ((WARMUP_RATIO - 0.25) / 0.2) ** 2 + 0.3 * (USE_NORM != False)
d += {"relu": 0.3, "gelu": 0.0, "tanh": 0.6}[ACTIVATION]
print("---")
print(f"score: {1.0 + 0.1 * d:.9f}")
""")


class NoNoise:
    def gauss(self, mu: float, sigma: float) -> float:
        return mu


def test_the_tuner_through_the_real_loop_improves_on_the_baseline(tmp_path):
    from conftest import make_repo

    from autoresearch_nb import Loop

    repo = make_repo(tmp_path / "r", {"train.py": BOWL_TARGET})
    # lookahead 0: one proposal after each decision, so every row here is a run of the tuner's own choice (with
    # overlap, a prepared change can conflict with a keep; tests/test_lookahead.py covers that path)
    with Loop.open(repo, tag="t", agent="tuner", metric="score", time_budget_s=5, noise_repeats=1, noise_k=0,
                   seed=3, lookahead="0") as loop:
        assert isinstance(loop.agent, TunerAgent)
        loop.optimize(n=8)
        exps = loop.experiments
        best = loop.best
    for e in exps:  # each row's metric is its own file's score: the bowl without its noise term
        assert e.status in (Status.KEEP, Status.DISCARD), e.reason
        assert e.metric == pytest.approx(bowl(e.content, NoNoise()), abs=1e-6)
    assert len(exps) == 8 and best.number > 0 and best.metric < exps[0].metric
    kept = [e for e in exps if e.status == Status.KEEP]
    assert all(b.metric < a.metric for a, b in zip(kept, kept[1:]))  # the plain rule: strictly better
    assert (repo / ".autoresearch" / "optuna" / "t.db").exists()  # the study, for optuna-dashboard


CONDITIONAL = '''\
# Hyperparameters
OPTIMIZER = "adamw"     # choices: adamw, muon
LR = 0.01               # only when OPTIMIZER = adamw: its learning rate
MUON_LR = 0.02          # only when OPTIMIZER = muon: its learning rate
DEPTH = 4


def main():
    pass
'''


def test_a_conditional_dial_is_never_proposed_where_it_does_nothing():
    """39 tuner experiments once spent 3 on MUON_LR under AdamW (a dial that does nothing there)."""
    space = discover(CONDITIONAL)

    def score(content: str) -> float:
        v = space.values(content)
        lr = v["LR"] if v["OPTIMIZER"] == "adamw" else v["MUON_LR"]
        return 1.0 + abs(math.log(lr / 0.005)) + 0.1 * abs(v["DEPTH"] - 3)

    config = Config(editable="target.py")
    loop = MiniLoop(TunerAgent(config, Path(".")), CONDITIONAL, score, config).run(20)
    parents = [loop.history[0].content]
    for e in loop.history[1:]:
        before, after = space.values(parents[-1]), space.values(e.content)
        for name in ("LR", "MUON_LR"):
            if before[name] != after[name]:
                assert space[name].active(before), f"{e.description}: {name} changed under {before['OPTIMIZER']}"
        if e.status == Status.KEEP:
            parents.append(e.content)
    agent = TunerAgent(config, Path("."))
    agent.propose(Context(program="", editable="target.py", source=CONDITIONAL, history=(), config=config))
    assert "MUON_LR" not in agent.space.names and "LR" in agent.space.names
    muon = CONDITIONAL.replace('OPTIMIZER = "adamw"', 'OPTIMIZER = "muon"')
    agent.propose(Context(program="", editable="target.py", source=muon, history=(), config=config))
    assert "MUON_LR" in agent.space.names and "LR" not in agent.space.names


# DEPTH 5 runs out of memory (as a CUDA OOM would: a traceback, a non-zero exit); every other file is the bowl.
OOM_TARGET = BOWL_TARGET.replace("import math\n", """import math
if DEPTH == 5:
    raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
""")


def test_a_shape_that_crashed_is_never_run_again(tmp_path):
    """Through the real loop: the bowl pulls DEPTH from 4 towards 7, through 5, which crashes. After its crash
    the tuner never runs DEPTH 5 again (without the crash record, TPE and the probes come back to it)."""
    from conftest import make_repo

    from autoresearch_nb import Loop

    repo = make_repo(tmp_path / "r", {"train.py": OOM_TARGET})
    # seed 2: without the crash record this run tries DEPTH 5 again at experiment 9
    with Loop.open(repo, tag="t", agent="tuner", metric="score", time_budget_s=5, noise_repeats=1, noise_k=0,
                   seed=2, lookahead="0") as loop:
        loop.optimize(n=14)
        exps = loop.experiments
        crashed = getattr(loop.agent, "crashed", [])
    depth5 = [e for e in exps if SPACE.values(e.content)["DEPTH"] == 5]
    assert [e.status for e in depth5] == [Status.CRASH], [(e.number, e.description, e.status) for e in depth5]
    assert {"DEPTH": 5} in crashed
    assert sum(e.status in (Status.KEEP, Status.DISCARD) for e in exps) >= 10  # the search went on around it


def test_a_crash_blames_the_shape_dials_it_moved_and_a_clean_run_clears_them():
    from autoresearch_nb.agents.tuner import crashed_shapes

    deeper = TARGET.replace("DEPTH = 4", "DEPTH = 6")
    hot = TARGET.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.07")
    both = deeper.replace("WIDTH = 2**7", "WIDTH = 2**9").replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02")
    history = [Experiment(0, "t", Status.KEEP, "baseline", metric=1.0, content=TARGET, sha="a"),
               Experiment(1, "t", Status.CRASH, "DEPTH 4 -> 6", content=deeper, parent_sha="a"),
               Experiment(2, "t", Status.CRASH, "LR up: diverged", content=hot, parent_sha="a"),  # a rate: no shape
               Experiment(3, "t", Status.TIMEOUT, "DEPTH, WIDTH, LR", content=both, parent_sha="a")]
    assert crashed_shapes(SPACE, history) == [{"DEPTH": 6}, {"DEPTH": 6, "WIDTH": 9}]
    fine = deeper.replace("WIDTH = 2**7", "WIDTH = 2**5")
    history.append(Experiment(4, "t", Status.DISCARD, "DEPTH 6 with WIDTH 32 ran", metric=1.1, content=fine))
    assert crashed_shapes(SPACE, history) == [{"DEPTH": 6, "WIDTH": 9}]  # DEPTH 6 alone is cleared


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_seed_comes_back_to_a_crashed_shape(seed):
    """Without the crash record, each of these seeds proposes DEPTH 5 again within 14 experiments."""
    config = Config(editable="target.py", seed=seed)
    loop = MiniLoop(TunerAgent(config, Path(".")), TARGET, lambda c: bowl(c, NoNoise()), config).run(
        14, crash_if=lambda p: SPACE.values(p.content)["DEPTH"] == 5)
    assert len([e for e in loop.history if SPACE.values(e.content)["DEPTH"] == 5]) == 1


def test_the_mirrored_study_takes_a_new_choice_on_resume(tmp_path, caplog):
    """A session writes the study file with ACTIVATION in (relu, gelu, tanh); the next one offers a fourth choice.
    Optuna refuses a changed distribution under the same name: the mirror is written anew, never left stale."""
    import optuna

    from autoresearch_nb.study import storage_url

    config = Config(editable="target.py", seed=1)
    rows = [Experiment(0, "t", Status.KEEP, "baseline", metric=1.2, content=TARGET),
            Experiment(1, "t", Status.DISCARD, "DEPTH 4 -> 5", metric=1.3, content=TARGET.replace("DEPTH = 4",
                                                                                                  "DEPTH = 5"))]

    def ctx(history):
        return Context(program="", editable="target.py", source=TARGET, history=tuple(history), config=config,
                       best=history[0])

    TunerAgent(config, tmp_path, study_dir=tmp_path).propose(ctx(rows))
    swish = TARGET.replace('ACTIVATION = "relu"', 'ACTIVATION = "swish"')
    rows.append(Experiment(2, "t", Status.DISCARD, "ACTIVATION relu -> swish", metric=1.25, content=swish))
    wider = TunerAgent(config, tmp_path, study_dir=tmp_path,
                       overrides={"ACTIVATION": ["relu", "gelu", "tanh", "swish"]})
    with caplog.at_level(logging.WARNING, logger="autoresearch_nb"):
        wider.propose(ctx(rows))
    assert "could not write the Optuna study file" not in caplog.text
    study = optuna.load_study(study_name="t", storage=storage_url(tmp_path / "t.db"))
    assert {t.user_attrs["experiment"]: t.params["ACTIVATION"] for t in study.trials} == \
        {0: "'relu'", 1: "'relu'", 2: "'swish'"}
