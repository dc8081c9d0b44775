# python -m pytest tests/test_effective.py -q
"""What a file runs: comments, formatting and the side of `a if CUDA else b` a device never reads do not count,
so such a proposal never spends a run (issue 25: no wasted proposals)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import EditsAgent, make_repo

from autoresearch_nb import Loop, Status
from autoresearch_nb.effective import effective_hash

SOURCE = "CUDA = False\nDEPTH = 8 if CUDA else 4   # layers\nLR = 0.01\n"


@pytest.mark.parametrize("other,same_on_cpu,same_on_cuda", [
    ("CUDA = False\nDEPTH = 8 if CUDA else 4\nLR = 0.01  # a note\n", True, True),        # a comment
    ("CUDA = False\n\nDEPTH = (8 if CUDA else 4)\nLR = 0.010\n", True, True),            # formatting, 0.010
    ("CUDA = False\nDEPTH = 16 if CUDA else 4   # layers\nLR = 0.01\n", True, False),   # the GPU side only
    ("CUDA = False\nDEPTH = 8 if CUDA else 3   # layers\nLR = 0.01\n", False, True),    # the CPU side only
    ("CUDA = False\nDEPTH = 4 if not CUDA else 16\nLR = 0.01\n", True, False),            # `not CUDA`
    ("CUDA = False\nDEPTH = 8 if CUDA else 4\nLR = 0.02\n", False, False),                # a real change
])
def test_the_effective_hash_sees_only_what_the_device_runs(other: str, same_on_cpu: bool, same_on_cuda: bool):
    assert (effective_hash(other, "cpu") == effective_hash(SOURCE, "cpu")) is same_on_cpu
    assert (effective_hash(other, "cuda") == effective_hash(SOURCE, "cuda")) is same_on_cuda


def test_a_file_that_does_not_parse_has_no_effective_hash():
    assert effective_hash("def (:\n", "cpu") is None and effective_hash(None, "cpu") is None


TARGET = textwrap.dedent("""\
    CUDA = False
    X = 3.0 if CUDA else 3.0   # where the score's minimum is looked for
    Y = 2.0
    print("---")
    print(f"score: {(X - 1) ** 2 + (Y + 1) ** 2:.6f}")
""")


def test_proposals_that_run_nothing_new_are_refused_without_a_run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_DEVICE_CLASS", "cpu")  # the runs' device, as the loop guesses it
    repo = make_repo(tmp_path / "r", {"train.py": TARGET})
    steps = [
        ("only a comment", "# where the score's minimum is looked for", "# the x coordinate"),
        ("only the GPU side", "X = 3.0 if CUDA", "X = 5.0 if CUDA"),
        ("X to 1", "X = 3.0 if CUDA else 3.0", "X = 3.0 if CUDA else 1.0"),
        ("Y to 5", "Y = 2.0", "Y = 5.0"),                       # worse: discarded
        ("Y to 5, with a note", "Y = 2.0", "Y = 5.0  # noted"),  # the discarded file again, but for a comment
    ]
    with Loop.open(repo, tag="e", agent=EditsAgent(steps), metric="score", time_budget_s=5, noise_repeats=1,
                   noise_k=0, verify="off") as loop:
        loop.optimize()
        rows = {e.description: e for e in loop.experiments}
    assert rows["only a comment"].status == Status.INVALID and "changes nothing the runs read" in \
        rows["only a comment"].reason and rows["only a comment"].log_path is None
    assert rows["only the GPU side"].status == Status.INVALID
    assert rows["X to 1"].status == Status.KEEP
    assert rows["Y to 5"].status == Status.DISCARD
    again = rows["Y to 5, with a note"]
    assert again.status == Status.SKIPPED and again.log_path is None, again.reason
    assert f"runs the same as experiment {rows['Y to 5'].number} (discard)" in again.reason
