# python -m pytest tests/test_session.py -q
"""Opening a run: the tag check, the lock, and recovery of a dead loop's runs (issue 12 fault 5, the pid gap)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import make_repo

from autoresearch_nb import Loop, Status
from autoresearch_nb.errors import ConfigError, StateError
from autoresearch_nb.session import RunLock, check_tag, marked_processes
from autoresearch_nb.store import Store

# A loop killed in the pid gap: the experiment's row is saved as running, its run has started, and the loop
# dies before the run's pid reaches the store (a pause injected there, then kill -9).
GAP_DRIVER = textwrap.dedent("""\
    import sys, time
    from autoresearch_nb import Loop, Proposal
    from autoresearch_nb.recorder import Recorder
    class Slow:
        name = "slow"
        def propose(self, context):
            return Proposal("slow", content=context.source.replace("SLEEP = 0.0", "SLEEP = 120.0"))
    loop = Loop.open(sys.argv[1], tag="k", agent=Slow(), metric="score", time_budget_s=5, timeout_s=300,
                     noise_repeats=1, noise_k=0, sandbox=sys.argv[2])
    loop.baseline()
    save = Recorder.save
    def stall(self, exp):
        if exp.pid and exp.number == 1:
            print("PID_GAP", exp.pid, flush=True)
            time.sleep(300)
        return save(self, exp)
    Recorder.save = stall
    loop.step()
""")
TARGET = "import time\nSLEEP = 0.0\ntime.sleep(SLEEP)\nprint('---')\nprint('score: 1.0')\n"
SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); " \
          "time.sleep(300)"


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("mode", ["landlock", "bubblewrap"])
def test_recovery_kills_a_run_whose_pid_was_never_saved(tmp_path: Path, mode: str) -> None:
    """Without bubblewrap the orphaned run outlives its loop until the next open kills it by its marker; under
    bubblewrap (``--die-with-parent``, its own pid namespace) it ends with the loop, and the row is recovered."""
    from autoresearch_nb import sandbox
    if mode == "bubblewrap" and sandbox.bubblewrap()[0] is None:
        pytest.skip(sandbox.bubblewrap()[1])
    if mode == "landlock" and sandbox.landlock_abi()[0] == 0:
        pytest.skip("no Landlock here")
    repo = make_repo(tmp_path / "r", {"train.py": TARGET})
    script = tmp_path / "driver.py"
    script.write_text(GAP_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), str(repo), mode], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[:1] == ["PID_GAP"], line
        child = int(line[1])
        store = Store(repo / ".autoresearch" / "store.db")
        row = store.get("k", 1)
        store.close()
        assert row.status == Status.RUNNING and row.pid is None  # the gap: nothing in the store names the run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    if mode == "bubblewrap":
        assert gone(child), "a run under bubblewrap outlived its loop"
    else:
        assert not gone(child, timeout=0.5)  # the orphaned run outlived its loop

    with Loop.open(repo, tag="k", agent="queue", sandbox=mode) as loop:
        assert [e.status for e in loop.experiments] == [Status.KEEP, Status.INTERRUPTED]
    assert gone(child), "the orphaned run was not killed on reopen"


def test_only_this_repositorys_runs_of_the_tag_are_orphans(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TARGET})
    with Loop.open(repo, tag="k", agent="queue", metric="score", noise_repeats=1, noise_k=0) as loop:
        worktree = loop.workspace.path
    env = {**os.environ, "AUTORESEARCH_RUN": "k/noise"}
    ours = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=worktree, env=env, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=tmp_path, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(ours.pid).children()) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = psutil.Process(ours.pid).children()[0].pid
        assert set(marked_processes(repo, "k")) == {ours.pid, grandchild}
        Loop.open(repo, tag="k", agent="queue").close()
        ours.wait(10)
        assert gone(grandchild) and other.poll() is None  # another repository's run of tag "k" lives on
    finally:
        for p in (ours, other):
            p.kill()
            p.wait(10)


def test_a_lock_held_in_another_process_is_a_state_error(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from autoresearch_nb.session import RunLock; "
                               "lock = RunLock(sys.argv[1], 't'); print('HELD', flush=True); time.sleep(60)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(StateError, match=f"pid {holder.pid}"):
            RunLock(tmp_path, "t")
    finally:
        holder.kill()
        holder.wait(10)
    RunLock(tmp_path, "t").release()


def test_the_same_process_taking_the_lock_again_closes_the_earlier_holder(tmp_path: Path) -> None:
    closed: list[str] = []
    first = RunLock(tmp_path, "t")
    first.owned_by(lambda: (closed.append("first"), first.release()))
    second = RunLock(tmp_path, "t")
    assert closed == ["first"]
    second.release()


def test_tags_git_and_paths_cannot_take_are_config_errors() -> None:
    assert check_tag("nov27") == "nov27" and check_tag(None)
    for bad in ("../evil", "-x", "a b", "x" * 65):
        with pytest.raises(ConfigError, match="tag"):
            check_tag(bad)
