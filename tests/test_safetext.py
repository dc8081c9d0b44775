# Run: python -m pytest tests/test_safetext.py -q
"""Escape sequences from agents and runs never reach the terminal (issue 22): through the real CLI, the console
lines, ``autoresearch-nb results`` (text, csv, tsv), results.tsv and the git subjects show them as text."""
from __future__ import annotations

from pathlib import Path

from autoresearch_nb.safetext import printable
from research_repo import cli, git, make_repo, run_queue, target

ESCAPES = "\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m"  # TOML escapes: OSC title, clear screen, one-byte CSI
QUEUE = f"""[[experiment]]
description = "X to 2 {ESCAPES}"
edits = [{{ search = "X = 3.0", replace = "X = 2.0" }}]

[[experiment]]
description = "crash loudly"
edits = [{{ search = 'print("step 1 | loss: 0.5")', replace = "raise RuntimeError('boom \\\\x1b[2J\\\\x1b]0;owned\\\\x07')" }}]
"""


def test_printable_shows_controls_and_keeps_text() -> None:
    assert printable("a\x1b[2Jb\x07c\r\x9bd\te\nf") == "a\\x1b[2Jb\\x07c\\x0d\\x9bd\te\nf"
    assert printable("plain ünïcode → ok") == "plain ünïcode → ok" and printable("") == ""


def test_no_escape_sequence_reaches_the_terminal_or_a_text_file(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"train.py": target(), "queue.toml": QUEUE})
    done = run_queue(root)
    assert done.returncode == 0, done.stderr
    outputs = {"run": done.stdout + done.stderr}
    for fmt in ("table", "csv", "tsv"):
        shown = cli("results", "--repo", str(root), "--format", fmt)
        assert shown.returncode == 0, shown.stderr
        outputs[f"results {fmt}"] = shown.stdout + shown.stderr
    outputs["results.tsv"] = (root / "results.tsv").read_text() if (root / "results.tsv").exists() else \
        next(root.rglob("results.tsv")).read_text()
    outputs["git log"] = git(root, "log", "--all", "--format=%s")
    for where, text in outputs.items():
        assert not any(c in text for c in "\x1b\x07\x9b"), where
    assert "\\x1b]0;pwned\\x07" in outputs["run"] and "\\x1b]0;pwned" in outputs["results table"]
    assert "\\x1b]0;pwned" in outputs["git log"] and "\\x1b" in outputs["results.tsv"]
    assert "boom \\x1b[2J" in outputs["run"]  # the crash's error line, shown as text
