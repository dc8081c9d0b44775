# python -m pytest tests/test_agents_probe.py -q
"""One-dial probes: steps per kind of constant, the probing order, the line search, and the tuner using them."""
from __future__ import annotations

from pathlib import Path

from autoresearch_nb.agents.base import Context
from autoresearch_nb.agents.probe import last_move, moves, priority, steps
from autoresearch_nb.agents.space import discover
from autoresearch_nb.agents.tuner import TunerAgent
from autoresearch_nb.config import Config
from autoresearch_nb.edits import content_hash
from autoresearch_nb.records import Experiment, Status

ROOT = Path(__file__).resolve().parents[1]

TARGET = '''\
# Hyperparameters
WEIGHT_DECAY = 0.0
GRAD_CLIP = 1.0
WARMDOWN_FRAC = 0.4
FINAL_LR_FRAC = 0.05
MLP_RATIO = 4
BATCH_SIZE = 16
MATRIX_LR = 0.04
ADAM_BETA2 = 0.95
ACTIVATION = "relu"  # choices: relu, gelu
DEPTH = 8 if CUDA else 4


def main():
    pass
'''
SPACE = discover(TARGET)


def test_steps_are_one_notch_in_each_constants_own_units():
    def neighbours(name):
        p = SPACE[name]
        return sorted(p.decode(v) for _, v in steps(p, p.encode(p.value)))

    assert neighbours("DEPTH") == [3, 5]                  # small int: +-1
    assert neighbours("BATCH_SIZE") == [8, 32]            # power of two: one exponent
    assert neighbours("MATRIX_LR") == [0.02, 0.08]        # log scale: x2 and /2
    assert neighbours("WARMDOWN_FRAC") == [0.267, 0.6]    # fraction: x1.5 and /1.5
    assert neighbours("ADAM_BETA2") == [0.9, 0.975]       # beta: twice or half of 1 - beta
    assert neighbours("WEIGHT_DECAY") == [0.05]           # zero: one step up into its range
    assert neighbours("ACTIVATION") == ["gelu"]           # a choice: the other values


def test_steps_stay_inside_the_bounds():
    space = discover("# Hyperparameters\nDEPTH = 1  # range: 1, 3\nLR = 0.01  # range: 0.005, 0.01, log\n")
    assert [space["DEPTH"].decode(v) for _, v in steps(space["DEPTH"], 1)] == [2]
    assert [space["LR"].decode(v) for _, v in steps(space["LR"], 0.01)] == [0.005]


def test_order_puts_the_model_size_dial_and_learning_rates_first():
    assert priority("DEPTH") < priority("MATRIX_LR") < priority("BATCH_SIZE") < priority("MLP_RATIO") \
        < priority("FINAL_LR_FRAC") < priority("GRAD_CLIP")
    order = [m.name for m in moves(SPACE, SPACE.encoded(TARGET), seed=0)]
    assert order[:2] == ["DEPTH", "DEPTH"] and order[2:4] == ["MATRIX_LR", "MATRIX_LR"]
    assert order.index("FINAL_LR_FRAC") > order.index("MLP_RATIO")   # a schedule constant, not a learning rate
    # the direction tried first depends on the seed, and both are always there
    firsts = {moves(SPACE, SPACE.encoded(TARGET), seed=s)[0].value for s in range(20)}
    assert firsts == {3, 5}


def test_a_kept_one_dial_move_is_continued_first():
    base = SPACE.encoded(TARGET)
    after = {**base, "BATCH_SIZE": base["BATCH_SIZE"] - 1}
    assert last_move([base, after]) == ("BATCH_SIZE", -1)
    assert last_move([base, {**after, "DEPTH": 3}]) is None          # two dials moved: no direction
    assert last_move([base]) is None
    first = moves(SPACE, after, seed=0, first=("BATCH_SIZE", -1))[0]
    assert (first.name, first.direction, first.value) == ("BATCH_SIZE", -1, base["BATCH_SIZE"] - 2)


def _propose(history, source):
    config = Config(editable="train.py")
    best = [e for e in history if e.status == Status.KEEP][-1]
    ctx = Context(program="", editable="train.py", source=source, history=tuple(history), config=config, best=best)
    return TunerAgent(config, ROOT).propose(ctx)


def _exp(n, content, status, metric, description="baseline", agent="baseline"):
    return Experiment(number=n, tag="probe", status=status, description=description, metric=metric,
                      content=content, content_hash=content_hash(content), agent=agent)


def test_the_tuner_probes_train_py_one_dial_at_a_time_then_follows_a_gain():
    source = (ROOT / "train.py").read_text()
    history = [_exp(0, source, Status.KEEP, 2.04)]
    first = _propose(history, source)
    assert first.meta["strategy"] == "probe" and first.description.startswith("DEPTH 4 -> ")
    assert len(first.edits) == 1                                        # one line of the file changed
    # the first direction made it worse: the other one comes next
    history.append(_exp(1, first.content, Status.DISCARD, 2.3, first.description, "tuner"))
    second = _propose(history, source)
    assert second.description.startswith("DEPTH 4 -> ") and second.content != first.content
    # a keep of DEPTH 4 -> 3 is followed by DEPTH 3 -> 2, the same way
    smaller = source.replace("DEPTH = 8 if CUDA else 4", "DEPTH = 7 if CUDA else 3")
    history = [history[0], _exp(1, smaller, Status.KEEP, 1.99, "DEPTH 4 -> 3 (8 -> 7 if CUDA)", "tuner")]
    third = _propose(history, smaller)
    assert third.description == "DEPTH 3 -> 2 (7 -> 6 if CUDA)", third.description


def _strategies(source: str, proposals: int) -> tuple[list[str], list[Experiment]]:
    """Propose ``proposals`` times on ``source``, every result worse than the baseline: the strategy of each."""
    history = [_exp(0, source, Status.KEEP, 1.0)]
    strategies = []
    for n in range(1, proposals + 1):
        p = _propose(history, source)
        strategies.append(p.meta["strategy"])
        history.append(_exp(n, p.content, Status.DISCARD, 1.0 + n, p.description, "tuner"))
    return strategies, history


def test_five_probes_first_then_one_in_four_and_tpe_when_none_is_left():
    strategies, history = _strategies("# Hyperparameters\nLR = 0.01\nDEPTH = 4\nWIDTH = 256\nGAIN = 2.0\n", 13)
    assert strategies == ["probe"] * 5 + ["tpe"] * 3 + ["probe"] + ["tpe"] * 3 + ["probe"]
    assert len({e.content_hash for e in history}) == len(history)
    # 1 constant: 2 one-step moves, then nothing is left one step from the best, so TPE alone
    assert _strategies("# Hyperparameters\nLR = 0.01\n", 4)[0] == ["probe", "probe", "tpe", "tpe"]


def test_random_sampler_does_not_probe():
    config = Config(editable="t.py")
    source = "# Hyperparameters\nLR = 0.01\nDEPTH = 4\n"
    ctx = Context(program="", editable="t.py", source=source, history=(_exp(0, source, Status.KEEP, 1.0),),
                  config=config)
    assert TunerAgent(config, ROOT, sampler="random").propose(ctx).meta["strategy"] == "random"
