# python -m pytest tests/test_repeats.py -q
"""Repeats keep their curves: the baseline's noise repeats and a marginal change's confirmation runs are stored
beside the experiment's own curve (the noise of a curve, for early stopping), and a repeat run again on a resume
starts its curve anew."""
from __future__ import annotations

import textwrap

from conftest import EditsAgent, make_repo

from autoresearch_nb import Loop, Status

# loss at each of three steps and the score depend on the seed, so each run's curve is known in advance
TRAIN = textwrap.dedent("""\
    import os
    seed = int(os.environ.get("AUTORESEARCH_SEED", "42"))
    for step in range(1, 4):
        print(f"step {step} | loss: {seed + step / 10:.2f}", flush=True)
    print("---")
    print(f"score: {1.0 + (seed % 7) / 1000:.4f}")
""")


def test_noise_repeats_keep_their_curves(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN})
    with Loop.open(repo, tag="t", agent=EditsAgent([]), metric="score", verify="off", time_budget_s=5,
                   noise_repeats=3, noise_k=2, seed=10) as loop:
        base = loop.baseline()
        assert base.status == Status.KEEP and base.seeds == [10, 11, 12]
        own = [p.loss for p in loop.curve(0)]
        curves = loop.store.repeat_curves("t", 0)
    assert own == [10.1, 10.2, 10.3]  # the experiment's own run, not mixed with its repeats
    assert sorted(curves) == [(0, "noise:0000.1"), (0, "noise:0000.2")]
    assert [p.loss for p in curves[(0, "noise:0000.1")]] == [11.1, 11.2, 11.3]
    assert [p.loss for p in curves[(0, "noise:0000.2")]] == [12.1, 12.2, 12.3]
