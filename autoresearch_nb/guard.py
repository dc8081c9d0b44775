"""``python guard.py --parent PID -- CMD...``: run CMD and kill its whole process group if PID (our parent) dies.

A remote worker (a Ray task) can be killed with SIGKILL; the experiment it started runs in its own process
group and would live on as an orphan. The guard leads that group, runs the command as its child, and when it
is re-parented (its parent died) it kills the group, the command's own children included.

It is run by path, not with ``-m``, so that it starts at once without importing the package; the parent's pid
is given on the command line because the parent may already be dead by the time the guard runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _dies_with(guard: int):
    """For the command's process (before it execs): SIGKILL when the guard dies (Linux). A Ray worker that exits
    kills its children, the guard among them, before the guard can end the group; the command must not live on.
    Processes the command starts itself are not covered (the guard's group kill is what covers them)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    def set_pdeathsig() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != guard:  # the guard died before the signal was armed
            os._exit(137)
    return set_pdeathsig


def main(argv: list[str]) -> int:
    parent = os.getppid()
    if argv[:1] == ["--parent"] and len(argv) > 1:
        parent = int(argv[1])
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        print("usage: python -m autoresearch_nb.guard -- CMD...", file=sys.stderr)
        return 2
    if argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    if os.getppid() != parent:  # the worker died before we even started
        return 137
    child = subprocess.Popen(argv, preexec_fn=_dies_with(os.getpid()))  # same process group as the guard
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:  # the worker that started us is gone
            os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(1)
            return 137


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
