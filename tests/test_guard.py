# python -m pytest tests/test_guard.py -q
"""The guard a Ray task starts its run under: the run never outlives the worker, nor the guard itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from autoresearch_nb import guard


def start(parent: int) -> tuple[subprocess.Popen, psutil.Process]:
    """A guard (in its own session, as the runner starts it) over a sleeping command; returns both."""
    proc = subprocess.Popen([sys.executable, guard.__file__, "--parent", str(parent), "--", sys.executable, "-c",
                             "import time; time.sleep(120)"], start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children()
        if children:
            return proc, children[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the guard never started its command")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_guard_killed_by_sigkill_takes_its_command_with_it() -> None:
    # A Ray worker that exits SIGKILLs its children, the guard among them: the run must not live on as an orphan.
    proc, command = start(os.getpid())
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        gone, alive = psutil.wait_procs([command], timeout=30)  # returns as soon as it is gone
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if command.is_running():
            command.kill()


def test_a_command_whose_parent_is_already_gone_never_starts() -> None:
    result = subprocess.run([sys.executable, guard.__file__, "--parent", "1", "--", sys.executable, "-c",
                             "print('ran')"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 137 and "ran" not in result.stdout
