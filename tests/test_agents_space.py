# python -m pytest tests/test_agents_space.py -q
"""Search-space discovery from a file's CAPS hyperparameter block."""
from __future__ import annotations

import pytest

from autoresearch_nb.agents.space import SpaceError, discover

TRAIN = '''\
"""A training script in the autoresearch style."""
import os
import torch

MAX_SEQ_LEN = 2048          # from the harness, above the banner: not ours to tune

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags needed)
# ---------------------------------------------------------------------------

# Model architecture
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # choices: SSSL, SSLL, LLLL

# Optimization
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
WEIGHT_DECAY = 0.2      # range: 0.0, 0.4
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
ADAM_BETA2 = 0.95
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128  # per-device batch size (reduce if OOM)
USE_COMPILE = True
SEED = 42
EVAL_EVERY = 250        # fixed
RUN_NAME = "base"

def build_model():
    LOCAL = 3
    return LOCAL

LATE_CONSTANT = 7
'''


def test_learning_rates_are_log_scaled_and_wider():
    space = discover(TRAIN, "train.py")
    lr = space["MATRIX_LR"]
    assert lr.kind == "float" and lr.log and lr.low == pytest.approx(0.005) and lr.high == pytest.approx(0.32)
    assert space["EMBEDDING_LR"].log


def test_depths_step_by_one_and_powers_of_two_step_by_exponent():
    space = discover(TRAIN)
    depth = space["DEPTH"]
    assert depth.kind == "int" and (depth.low, depth.high) == (4, 12) and not depth.log
    batch = space["TOTAL_BATCH_SIZE"]
    assert batch.kind == "pow2" and (batch.low, batch.high) == (17, 21)
    assert space["DEVICE_BATCH_SIZE"].kind == "pow2" and space["HEAD_DIM"].kind == "pow2"


def test_booleans_and_strings_with_choices():
    space = discover(TRAIN)
    assert space["USE_COMPILE"].choices == ("True", "False")
    assert space["WINDOW_PATTERN"].choices == ("'SSSL'", "'SSLL'", "'LLLL'")


def test_fractions_stay_in_unit_interval_and_betas_below_one():
    space = discover(TRAIN)
    assert (space["WARMUP_RATIO"].low, space["WARMUP_RATIO"].high) == (0.0, 0.3)
    assert space["WARMDOWN_RATIO"].high == 1.0 and not space["WARMDOWN_RATIO"].log
    assert space["ADAM_BETA2"].high < 1.0


def test_explicit_range_comment_wins():
    p = discover(TRAIN)["WEIGHT_DECAY"]
    assert (p.low, p.high, p.log) == (0.0, 0.4, False)
    p = discover("# Hyperparameters\nLR = 0.01  # range: 1e-4, 1e-1, log\n")["LR"]
    assert (p.kind, p.low, p.high, p.log) == ("float", 1e-4, 1e-1, True)   # the docstring's form


def test_only_the_banner_block_is_read_and_untunable_names_are_skipped():
    space = discover(TRAIN)
    names = space.names
    assert "MAX_SEQ_LEN" not in names and "LATE_CONSTANT" not in names and "LOCAL" not in names
    assert {"SEED", "EVAL_EVERY", "RUN_NAME", "ADAM_BETAS"} <= set(space.skipped)
    assert names[0] == "ASPECT_RATIO"


def test_without_banner_every_top_level_constant_before_the_first_function():
    space = discover("A_LR = 1e-3\nN_LAYERS = 3\ndef f():\n    pass\nB = 2\n")
    assert space.names == ["A_LR", "N_LAYERS"]


def test_a_file_with_no_constants_gives_an_empty_space():
    space = discover("import sys\n\ndef main():\n    return 0\n")
    assert len(space) == 0 and list(space) == []


def test_a_file_that_does_not_parse_is_a_clear_error():
    with pytest.raises(SpaceError, match="does not parse"):
        discover("LR = (\n", "train.py")


def test_tuples_and_strings_with_choices_and_overrides():
    src = 'BETAS = (0.8, 0.95)  # choices: (0.8, 0.95), (0.9, 0.99)\nACT = "relu"\nK = 5\n'
    space = discover(src, overrides={"ACT": ["relu", "gelu"], "K": (1, 9), "BETAS": None})
    assert space.names == ["ACT", "K"]
    assert space["ACT"].choices == ("'relu'", "'gelu'") and (space["K"].low, space["K"].high) == (1, 9)
    assert discover(src)["BETAS"].choices == ("(0.8, 0.95)", "(0.9, 0.99)")


def test_render_keeps_comments_and_style_and_round_trips_through_encoding():
    space = discover(TRAIN)
    new = space.render(TRAIN, {"TOTAL_BATCH_SIZE": 2**18, "MATRIX_LR": 0.0283, "WINDOW_PATTERN": "LLLL",
                               "USE_COMPILE": False, "DEPTH": 10})
    assert "TOTAL_BATCH_SIZE = 2**18 # ~524K tokens per optimizer step\n" in new
    assert "MATRIX_LR = 0.0283      # learning rate" in new   # the comment keeps its column
    assert 'WINDOW_PATTERN = "LLLL" # choices' in new and "USE_COMPILE = False\n" in new
    enc = space.encoded(new)
    assert enc["TOTAL_BATCH_SIZE"] == 18 and enc["MATRIX_LR"] == 0.0283 and enc["USE_COMPILE"] == "False"
    assert enc["DEPTH"] == 10
    compile(new, "train.py", "exec")


def test_decode_rounds_to_readable_values_inside_bounds():
    p = discover("MATRIX_LR = 0.04\n")["MATRIX_LR"]
    assert p.decode(0.0283456789) == 0.0283
    assert p.low <= p.decode(p.low * 1.0000001) <= p.high


def test_values_outside_the_space_do_not_encode():
    space = discover("DEPTH = 8\n")
    assert space.encoded("DEPTH = 80\n") is None
    assert space.encoded("X = 1\n") is None


def test_a_conditional_with_two_numbers_is_tuned_as_its_last_branch_and_the_first_follows():
    src = "DEPTH = 8 if CUDA else 4            # layers\nBATCH = 64 if CUDA else 16\nLR = 1e-3 if CUDA else 3e-3\n" \
          "AUTOCAST = fast(DEVICE)\nUNTIMED_STEPS = 5 if CUDA else 1\n"
    space = discover(src)
    assert space.names == ["DEPTH", "BATCH", "LR"] and space["DEPTH"].value == 4
    assert (space["DEPTH"].low, space["DEPTH"].high) == (2, 6) and space["BATCH"].kind == "pow2"
    values = {"DEPTH": 6, "BATCH": 32, "LR": 6e-3}
    new = space.render(src, values)
    assert new.splitlines()[:3] == ["DEPTH = 10 if CUDA else 6           # layers", "BATCH = 128 if CUDA else 32",
                                    "LR = 0.002 if CUDA else 0.006"]
    assert space.values(new) == values
    assert space.describe(src, {"DEPTH": 6}) == "DEPTH 4 -> 6 (8 -> 10 if CUDA)"


# -- the comment grammar (issue 25): prose after the values is the author's, a malformed list is a clear error --

@pytest.mark.parametrize("comment,low,high,log", [
    ("range: 1, 64 subarrays this small are insertion-sorted", 1, 64, False),  # once a list of string choices
    ("range: 0.0, 0.4   explicit bounds, linear (`range: 1e-4, 1e-1, log`)", 0.0, 0.4, False),  # the docstring's
    ("range: 1e-4, 1e-1, log  (learning rates)", 1e-4, 1e-1, True),
    ("range: 2**4, 2**10", 16, 1024, False),
])
def test_a_range_comment_with_trailing_text_parses_as_its_author_meant(comment, low, high, log):
    value = 0.1 if isinstance(low, float) else 32
    p = discover(f"# Hyperparameters\nK = {value}  # {comment}\n")["K"]
    assert (p.low, p.high, p.log) == (low, high, log) and p.kind in ("int", "float")


def test_a_choices_comment_with_trailing_text_keeps_only_the_values():
    src = ('# Hyperparameters\nACT = "relu2"  # choices: relu2, gelu, swiglu   the MLP activation\n'
           'BETAS = (0.9, 0.95)  # choices: (0.8, 0.95), (0.9, 0.95) the Adam betas\n'
           'OPT = "adamw"  # choices: adamw | muon\n')
    space = discover(src)
    assert space["ACT"].choices == ("'relu2'", "'gelu'", "'swiglu'")
    assert space["BETAS"].choices == ("(0.8, 0.95)", "(0.9, 0.95)")
    assert space["OPT"].choices == ("'adamw'", "'muon'")


@pytest.mark.parametrize("line,words", [
    ("K = 7  # range: big enough\n", "'# range:' needs two numbers"),
    ("K = 7  # range: 1\n", "'# range:' needs two numbers"),
    ('ACT = "a"  # choices: !!, b\n', "'# choices:' lists values"),
])
def test_a_malformed_comment_is_an_error_naming_the_constant_and_its_line(line, words):
    with pytest.raises(SpaceError, match=r"K|ACT") as raised:
        discover("# Hyperparameters\nLR = 0.1\n" + line)
    assert words in str(raised.value) and "(line 3)" in str(raised.value)


def test_the_module_docstring_example_parses_as_documented():
    from autoresearch_nb.agents import space
    block = "\n".join(line.strip() for line in space.__doc__.splitlines() if " = " in line and "#" in line
                      and line.startswith("    ") and not line.strip().startswith(">>>"))
    params = {p.name: p for p in discover(block)}
    assert (params["WEIGHT_DECAY"].low, params["WEIGHT_DECAY"].high) == (0.0, 0.4)
    assert params["WINDOW_PATTERN"].choices == ("'SSSL'", "'SSLL'", "'LLLL'")


def test_the_documented_grammar_example_parses_as_documented():
    from pathlib import Path
    page = (Path(__file__).resolve().parents[1] / "docs" / "agents.md").read_text()
    space = {p.name: p for p in discover(page.split("```python")[1].split("```")[0])}
    assert (space["CUTOFF"].low, space["CUTOFF"].high) == (1, 64)
    assert (space["LR"].low, space["LR"].high, space["LR"].log) == (1e-4, 1e-1, True)
    assert space["ACT"].choices == ("'relu2'", "'gelu'", "'swiglu'")


def test_describe_change_names_the_constants_an_edit_sets_and_says_when_more_changed() -> None:
    from autoresearch_nb.agents.space import describe_change

    old = "LR = 0.02\nDEPTH = 8 if CUDA else 4\nNAME = 'a'\n\ndef f():\n    return 1\n"
    assert describe_change(old, old.replace("0.02", "0.01")) == "LR 0.02 -> 0.01"
    assert describe_change(old, old.replace("8 if", "16 if")) == "DEPTH if CUDA: 8 -> 16"
    assert describe_change(old, old.replace("'a'", "'b'").replace("return 1", "return 2")) \
        == "NAME 'a' -> 'b' + other code"
    assert describe_change(old, old.replace("return 1", "return 2")) == "1 line changed"
