# python -m pytest tests/test_protocol.py -q
"""The text protocol's one parser, with the cases of both its callers: the runner (lines it streamed) and the
harness (a run's whole output)."""
from __future__ import annotations

import math
import subprocess
import sys

from autoresearch_nb import protocol
from autoresearch_nb.protocol import (Progress, format_summary, is_fail, last_error, parse_progress,
                                      parse_summary, split_lines)

# karpathy/autoresearch's train.py prints exactly this block.
KARPATHY = """\
step 00953 (100.0%) | loss: 3.123456 | lrm: 0.00 | dt: 315ms | tok/s: 1,584,000 | mfu: 39.8% | epoch: 1 \r
---
val_bpb:          0.997900
training_seconds: 300.1
total_seconds:    325.9
peak_vram_mb:     45060.2
mfu_percent:      39.80
total_tokens_M:   499.6
num_steps:        953
num_params_M:     50.3
depth:            8
"""


def test_karpathys_summary_is_read_unchanged() -> None:
    summary = parse_summary(KARPATHY)
    assert summary["val_bpb"] == 0.9979 and summary["num_steps"] == 953 and summary["depth"] == 8
    assert summary["peak_vram_mb"] == 45060.2
    assert summary["peak_memory_mb"] == 45060.2  # his key fills ours (results.tsv's memory column)


def test_our_own_key_wins_over_the_alias() -> None:
    assert parse_summary("---\npeak_vram_mb: 1\npeak_memory_mb: 2\n")["peak_memory_mb"] == 2.0


def test_summary_is_read_after_the_last_dashes() -> None:
    assert parse_summary(["---", "a: 1", "---", "b: 2"]) == {"b": 2.0}


def test_text_and_lines_give_the_same_summary() -> None:
    # The harness parses a whole output (with \r redraws), the runner the lines it has streamed.
    assert parse_summary(KARPATHY) == parse_summary(split_lines(KARPATHY))


def test_no_dashes_no_summary() -> None:
    assert parse_summary("val_bpb: 1.0\n") == {}


def test_dashes_with_spaces_and_a_progress_redraw_before_them_start_the_summary() -> None:
    assert parse_summary("step 1 | loss: 5.0\r  ---  \nscore: 2\n") == {"score": 2.0}


def test_values_keep_their_type() -> None:
    summary = parse_summary("---\ndevice: cpu (cpu config)\ntokens: 1,200\nloss: nan\nratio: 1e-3\nurl: a:b\n")
    assert summary["device"] == "cpu (cpu config)" and summary["tokens"] == 1200.0
    assert math.isnan(summary["loss"]) and summary["ratio"] == 1e-3
    assert summary["url"] == "a:b"  # split at the first colon only


def test_prose_after_the_summary_is_not_read_as_a_key() -> None:
    summary = parse_summary("---\nscore: 3\nSee the docs at: somewhere\n  indented_key: 4\n")
    assert summary == {"score": 3.0, "indented_key": 4.0}


def test_format_summary_round_trips() -> None:
    summary = {"val_bpb": 0.5, "num_steps": 10, "device": "cpu (cpu config)"}
    text = "step 1 | loss: 2\r" + format_summary(summary)
    assert parse_summary(text) == {"val_bpb": 0.5, "num_steps": 10.0, "device": "cpu (cpu config)"}


def test_progress_line() -> None:
    point = parse_progress("step 00012 (4.0%) | loss: 3.50 | tok/s: 1,200 | dt: 250ms | elapsed: 5.1s", 9.9)
    assert point == Progress(12, 5.1, 3.5, {"tok/s": 1200.0, "dt": 0.25, "progress": 0.04})
    assert parse_progress("Loading data: 100 files", 1.0) is None


def test_fail_and_the_last_error_line() -> None:
    assert is_fail("FAIL") and is_fail("FAIL: loss is nan") and is_fail("  FAIL  ")
    assert not is_fail("no FAIL here")
    lines = ["step 1", "Traceback (most recent call last):", '  File "train.py", line 3', "    x()",
             "ValueError: bad shape", "more output"]
    assert last_error(lines) == "ValueError: bad shape"
    assert last_error(["loss 3", "FAIL", "reason: diverged"]) == "FAIL"
    assert last_error(["all fine"]) is None


def test_the_protocol_imports_only_the_standard_library() -> None:
    # Both sides import it: the loop's runner and the run's harness.
    code = ("import sys; before = set(sys.modules); import autoresearch_nb.protocol; "
            "print(' '.join(sorted(m for m in set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {m.split(".")[0] for m in out} <= {"autoresearch_nb"} | set(sys.stdlib_module_names), out
    assert protocol.__name__ == "autoresearch_nb.protocol"


def test_karpathys_progress_line_is_a_point() -> None:
    line = split_lines(KARPATHY)[0]
    point = parse_progress(line, 12.0)
    assert (point.step, point.loss, point.elapsed_s) == (953, 3.123456, 12.0)
    assert point.values["dt"] == 0.315 and point.values["mfu"] == 39.8 and point.values["tok/s"] == 1_584_000
