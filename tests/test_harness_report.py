# Run: python -m pytest tests/test_harness_report.py -q
from __future__ import annotations

import io
import subprocess
import sys

import torch

from autoresearch_nb.harness import constants as C
from autoresearch_nb.harness.corpus import write_corpus
from autoresearch_nb.harness import parse_summary
from autoresearch_nb.harness.report import SUMMARY_KEYS, diverged, progress, report
from autoresearch_nb.harness.tokenizer import ByteTokenizer


class Uniform(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(256))

    def forward(self, x):
        return self.w.expand(*x.shape, 256)


def test_progress_line_is_redrawn_and_parseable():
    out = io.StringIO()
    progress(step=123, fraction=0.452, loss=3.45678, lr=1e-3, tok_per_s=12345, mfu=1.2, elapsed=54.3, stream=out)
    line = out.getvalue()
    assert line.startswith("\rstep 00123 (45.2%) | loss: 3.4568 | lr: 1.0e-03 | tok/s: 12,345")
    assert "elapsed: 54.3s" in line and "\n" not in line


def test_report_prints_every_summary_key(tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_PEAK_FLOPS, "1e11")
    corpus = write_corpus(tmp_path, "t", [("a", b"abc" * 100)], [("b", bytes(range(256)) * 4)], source="test")
    out = io.StringIO()
    summary = report(Uniform(), corpus, ByteTokenizer(), training_seconds=2.0, num_steps=5, total_tokens=1000,
                     flops_per_token=1e6, depth=1, device="cpu", stream=out)
    assert "\n[phase] evaluate\n" in out.getvalue().split("---")[0]  # before the summary, on a line of its own
    parsed = parse_summary("step 00001 | loss: 5.0\r" + out.getvalue())
    assert set(SUMMARY_KEYS) <= set(parsed)
    assert abs(parsed["val_bpb"] - 8.0) < 1e-4 and parsed == {k: summary[k] if isinstance(summary[k], str)
                                                              else float(summary[k]) for k in summary}
    assert parsed["corpus"] == corpus.fingerprint and parsed["mfu_percent"] == 0.5


def test_divergence_rule():
    assert diverged(float("nan")) and diverged(float("inf")) and diverged(C.FAIL_LOSS + 1)
    assert not diverged(3.0)


def test_fail_prints_FAIL_and_exits_nonzero():
    code = "from autoresearch_nb.harness import fail; print('step 1', end=''); fail('loss is nan')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "FAIL" in result.stdout.splitlines()
