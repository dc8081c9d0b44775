# python -m pytest tests/test_executors.py -q
"""The local executor: a job runs in its worker's worktree under the runner's limits, the stall watchdog too."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from autoresearch_nb.boundary import Boundary
from autoresearch_nb.config import Config
from autoresearch_nb.executors import Job, LocalExecutor
from autoresearch_nb.runner import scrub_env

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import git, make_repo  # noqa: E402

SILENT = 'import time\nprint("started", flush=True)\ntime.sleep(600)\n'


def outcome(executor: LocalExecutor, within_s: float = 120) -> object:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = executor.poll(0.2)
        if got:
            return got[0]
    raise AssertionError("the job never finished")


def test_a_silent_job_is_killed_by_the_stall_watchdog(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"train.py": SILENT})
    executor = LocalExecutor(Boundary(root, "a", Config()), 1)
    try:
        job = Job(1, git(root, "rev-parse", "HEAD"), "python train.py", "train.py", 300.0, scrub_env(),
                  str(tmp_path / "1.log"), stall_s=1.0)
        executor.submit(job, lambda n, p: None)
        result = outcome(executor).result
    finally:
        executor.close()
    assert result.stalled and result.timed_out and result.error == "stalled: no output for 1 s"


def test_a_run_whose_verifier_cannot_begin_is_a_failed_outcome_not_a_hung_driver(tmp_path: Path) -> None:
    """The export folder cannot be made (a file stands in its way): the worker reports a failed run."""
    from autoresearch_nb.verify import ENV_EXPORT, MODEL, Verification

    root = make_repo(tmp_path / "r", {"train.py": 'print("---")\nprint("val_bpb: 1.0")\n'})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    executor = LocalExecutor(Boundary(root, "a", Config()), 1)
    try:
        job = Job(1, git(root, "rev-parse", "HEAD"), "python train.py", "train.py", 300.0,
                  {**scrub_env(), ENV_EXPORT: str(blocker / "1")}, str(tmp_path / "1.log"),
                  verification=Verification(metric="val_bpb", command=MODEL))
        executor.submit(job, lambda n, p: None)
        got = outcome(executor)
    finally:
        executor.close()
    assert got.number == 1 and got.result.failed and "could not start" in got.result.error
