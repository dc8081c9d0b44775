# python -m pytest tests/test_trial.py -q
"""One run of one commit: execute() in a plain directory, and classify() as the one place a result gets a status."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoresearch_nb.records import RunResult, Status
from autoresearch_nb.pipeline import StopSignal, execute
from autoresearch_nb.trial import classify


def result(summary: dict | None = None, **kw) -> RunResult:
    base = dict(exit_code=0, timed_out=False, wall_s=1.0, summary=summary or {}, failed=False, error=None,
                log_path="x.log")
    return RunResult(**{**base, **kw})


def script(tmp_path: Path, body: str) -> str:
    (tmp_path / "t.py").write_text(body)
    return f"{sys.executable} t.py"


def test_a_clean_run_waits_for_the_keep_rule() -> None:
    assert classify(result({"score": 1.5}), "score") == (Status.RUNNING, "", 1.5)


@pytest.mark.parametrize("value, reason", [(float("nan"), "score is NaN"), (float("inf"), "score is inf (not finite)"),
                                           ("fast", "no 'score' in the run's summary")])
def test_an_unusable_metric_is_a_crash_that_says_why(value, reason: str) -> None:
    status, why, metric = classify(result({"score": value}), "score")
    assert status == Status.CRASH and why.startswith(reason) and metric is None


def test_failures_in_order_interrupted_timeout_crash() -> None:
    assert classify(result(interrupted=True, exit_code=-15), "s").status == Status.INTERRUPTED
    assert classify(result({"s": 1.0}, timed_out=True, error="killed"), "s")[:2] == (Status.TIMEOUT, "killed")
    assert classify(result({"s": 1.0}, exit_code=2), "s")[:2] == (Status.CRASH, "exit code 2")
    assert classify(result({"s": 1.0}, failed=True, error="FAIL"), "s")[:2] == (Status.CRASH, "FAIL")


def test_a_changed_file_is_a_violation_except_for_an_interrupted_run() -> None:
    status, reason, _ = classify(result({"s": 1.0}), "s", ["train.py", "data.bin"], "train.py")
    assert status == Status.VIOLATION and "train.py (rewritten by the run), data.bin" in reason
    assert classify(result(interrupted=True), "s", ["data.bin"], "train.py").status == Status.INTERRUPTED


def test_execute_runs_in_the_given_directory_and_the_verifier_sees_the_result(tmp_path: Path) -> None:
    cmd = script(tmp_path, "import os\nprint('---')\nprint('score: 2')\nprint('here:', os.path.exists('t.py'))\n")
    seen = []
    out = execute(cmd, tmp_path, tmp_path / "log", env=None, timeout_s=30, stop=StopSignal(),
                  verify=lambda r: (seen.append(r), r.__class__(**{**r.__dict__, "summary": {"score": 3.0}}))[1])
    assert seen[0].summary["score"] == 2.0 and out.summary == {"score": 3.0}


def test_a_verification_begun_with_the_run_is_closed_however_the_run_ends(tmp_path: Path) -> None:
    class Begun:
        """A verification begun before the run (verify.Pending's shape): called for a clean end only."""

        def __init__(self) -> None:
            self.called, self.closed = 0, 0

        def __call__(self, result: RunResult) -> RunResult:
            self.called += 1
            return result

        def close(self) -> None:
            self.closed += 1

    clean, stopped = Begun(), Begun()
    execute(script(tmp_path, "print('---')\nprint('score: 1')\n"), tmp_path, tmp_path / "a.log", env=None,
            timeout_s=30, stop=StopSignal(), verify=clean)
    stop = StopSignal()
    stop.set(force=True)
    out = execute(script(tmp_path, "import time\ntime.sleep(30)\n"), tmp_path, tmp_path / "b.log", env=None,
                  timeout_s=60, stop=stop, verify=stopped)
    assert (clean.called, clean.closed) == (1, 1)
    assert out.interrupted and (stopped.called, stopped.closed) == (0, 1)  # no verifier left waiting


def test_a_forced_stop_before_the_run_cancels_it_at_once(tmp_path: Path) -> None:
    stop = StopSignal()
    stop.set(force=True)
    out = execute(script(tmp_path, "import time\ntime.sleep(30)\n"), tmp_path, tmp_path / "log", env=None,
                  timeout_s=60, stop=stop)
    assert out.interrupted and stop.forced
    stop.clear()
    assert not stop.is_set() and not stop.forced


def test_a_verification_counts_as_busy_time_for_the_duty_cycle(tmp_path: Path) -> None:
    import time

    def slow_verifier(result: RunResult) -> RunResult:
        time.sleep(0.5)  # a verifier re-scoring the model: the device works, the duty cycle must see it
        return result

    stop = StopSignal()
    cmd = script(tmp_path, "print('---')\nprint('score: 1')\n")
    out = execute(cmd, tmp_path, tmp_path / "b.log", env=None, timeout_s=30, stop=stop, verify=slow_verifier)
    assert stop.busy_s - out.wall_s >= 0.45  # the run's own seconds, plus the verification's half second
