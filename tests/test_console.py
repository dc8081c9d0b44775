# pytest tests/test_console.py -q
"""The console printer: a line per experiment with the overall progress, and progress while a run goes (a line
every 10 % of the budget when the output is not a terminal). One test goes through the real CLI."""
from __future__ import annotations

import io
import subprocess
import sys

from autoresearch_nb.console import ConsolePrinter, overall_progress
from autoresearch_nb.dashboard import make_demo_repo
from autoresearch_nb.events import Event, EventKind
from autoresearch_nb.records import CurvePoint, Experiment, Status


def ex(number, status=Status.RUNNING, **kw):
    return Experiment(number, "c", status, description=kw.pop("description", f"idea {number}"), **kw)


def test_not_a_terminal_prints_a_line_every_tenth_of_the_budget():
    out = io.StringIO()   # isatty() is False: a log file, nohup, papermill
    p = ConsolePrinter(out, budget_s=10.0)
    for i in range(1, 101):
        p(Event(EventKind.PROGRESS, ex(1), CurvePoint(i, i * 0.1, 3.0)))
    lines = [line for line in out.getvalue().splitlines() if "%" in line]
    assert [line.split()[1] for line in lines] == [f"{10 * k}%" for k in range(1, 11)]
    assert "\r" not in out.getvalue()


def test_a_repeat_run_gets_its_own_tenths():
    out = io.StringIO()
    p = ConsolePrinter(out, budget_s=1.0)
    p(Event(EventKind.PROGRESS, ex(0), CurvePoint(5, 0.55, 3.0)))
    p(Event(EventKind.PROGRESS, ex(0), CurvePoint(1, 0.15, 3.0), purpose="noise", repeat=1))
    assert "#0  50%" in out.getvalue() and "#0 noise  10%" in out.getvalue()


def test_decided_lines_carry_the_overall_progress_and_a_rejection_reads_rejected():
    out = io.StringIO()
    p = ConsolePrinter(out, metric="score", total=4, done=1)
    p(Event(EventKind.DECIDED, ex(1, Status.KEEP, metric=1.0, wall_seconds=60.0)))
    p(Event(EventKind.DECIDED, ex(2, Status.INVALID, reason="rejected by the user")))
    first, second = out.getvalue().splitlines()
    assert first.endswith("[experiment 2 / 4 · ETA 2 min]")
    assert "#2    rejected" in second


def test_a_run_busy_after_training_says_with_what_and_its_line_says_where_the_time_went():
    out = io.StringIO()
    p = ConsolePrinter(out, metric="score")
    p(Event(EventKind.PHASE, ex(3), message="train"))
    p(Event(EventKind.PHASE, ex(3), message="evaluate"))
    p(Event(EventKind.PHASE, ex(3), message="verify", purpose="noise"))
    p(Event(EventKind.DECIDED, ex(3, Status.DISCARD, metric=1.0, wall_seconds=31.0, phase_seconds={
        "prepare": 0.1, "start": 3.2, "train": 20.1, "evaluate": 7.6, "verify": 0.0})))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["  #3 evaluating", "  #3 noise verifying"]
    assert "31.0s [start 3s train 20s eval 8s]" in lines[2]


def test_overall_progress_without_a_total_gives_the_pace():
    assert overall_progress(0, 5, 10.0) == ""
    assert overall_progress(4, None, 125.0) == "experiment 4 · 2 min each"


def test_the_cli_prints_overall_progress_and_tenths_into_a_log(tmp_path):
    repo = make_demo_repo(tmp_path / "target")
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--repo", str(repo), "--tag", "log",
                        "--agent", "queue", "--time-budget-s", "2", "--max-experiments", "3"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[experiment 3 / 3]" in r.stdout and "experiment 2 / 3 · ETA" in r.stdout
    assert "#1  50% " in r.stdout and "\r" not in r.stdout
