# pytest tests/test_dashboard_pump.py -q
"""Buttons during a blocking cell, in a real IPython kernel (issue 26 bug 1): a client plays the front end. While a
cell blocks in ``loop.run(exp)`` it clicks the dashboard's Stop now (a comm message, as JupyterLab sends it) and
queues another cell. The click must act during the run (the run is recorded ``interrupted``, not the 60-second run
finishing or hitting its timeout), the queued cell must run after the blocking one, and the next cell's run must
not be cancelled by the click that stopped the last one. This pins the ipykernel internals the pump uses
(its message queue), and the Run All case: cells held behind a waiting cell serve clicks when they run in turn."""
from __future__ import annotations

import json
import os
import queue
import time

import pytest

from test_notebooks import kernel_env

QUEUE = '''[[experiment]]
description = "halve the width"
edits = [{ search = "WIDTH = 64", replace = "WIDTH = 32" }]

[[experiment]]
description = "a very long run"
edits = [{ search = "EXTRA_SECONDS = 0.0", replace = "EXTRA_SECONDS = 60.0" }]

[[experiment]]
description = "lower the learning rate to 0.003"
edits = [{ search = "LR = 0.01", replace = "LR = 0.003" }]
'''

SETUP = """
from autoresearch_nb import Loop
from autoresearch_nb.dashboard import make_demo_repo
from autoresearch_nb.dashboard.widgets import Dashboard
repo = make_demo_repo({path!r}, queue={queue!r})
loop = Loop.open(repo, tag="pump", agent="queue", time_budget_s=1, noise_repeats=2)
dash = Dashboard(loop)
base = loop.baseline()
from autoresearch_nb import waiting
print("PUMP", waiting.installed())
print("STOP-BUTTON", dash.stop_now_button.model_id)
"""


class Kernel:
    """A started kernel and its client, with the iopub messages read so far kept in order."""

    def __init__(self, tmp_path):
        from jupyter_client import KernelManager

        env = {**os.environ, **kernel_env(tmp_path)}
        self.km = KernelManager(kernel_name="python3")
        os.environ.update({k: v for k, v in kernel_env(tmp_path).items()})  # the spec lookup reads these
        self.km.start_kernel(env=env, cwd=str(tmp_path))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.seen: list[dict] = []

    def read_until(self, found, timeout: float = 120.0) -> dict:
        """Read iopub until ``found(msg)``; every message read is kept in :attr:`seen`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(msg)
            if found(msg):
                return msg
        raise AssertionError("not seen in time; the kernel said:\n" + "\n".join(
            json.dumps(m["content"])[:300] for m in self.seen[-30:]))

    def printed(self, msg_id: str) -> str:
        return "".join(m["content"].get("text", "") for m in self.seen
                       if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id)

    def execute(self, code: str) -> str:
        """Send a cell that prints an end marker as its last act (a status message cannot tell when a cell
        ended: the messages handled inside it report busy and idle too)."""
        return self.kc.execute(code + "\nprint('END-OF-CELL')")

    def finished(self, msg_id: str) -> None:
        self.read_until(lambda m: m["parent_header"].get("msg_id") == msg_id and (
            m["msg_type"] == "error" or "END-OF-CELL" in m["content"].get("text", "")), timeout=180)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    for k, v in kernel_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    k = Kernel(tmp_path)
    yield k
    k.close()


def test_stop_now_clicked_while_a_cell_runs_ends_that_run_and_queued_cells_run_after(kernel, tmp_path):
    setup = kernel.execute(SETUP.format(path=str(tmp_path / "target"), queue=QUEUE))
    kernel.finished(setup)
    out = kernel.printed(setup)
    assert "STOP-BUTTON" in out, out + "".join(json.dumps(m["content"])[:500] for m in kernel.seen[-10:])
    button = out.split("STOP-BUTTON", 1)[1].split()[0]

    # As Run All sends them: a short run, then the long one queued behind it (held back while the first
    # cell's wait serves the widgets, then replayed), then a cell queued behind that.
    first = kernel.execute("exp = loop.run(loop.propose())\nprint('FIRST', exp.number, exp.status.value)")
    blocking = kernel.execute("exp = loop.run(loop.propose())\nprint('RAN', exp.number, exp.status.value)")
    queued = kernel.execute("print('AFTER', exp.status.value)")
    kernel.finished(first)
    assert "FIRST 1 running" in kernel.printed(first)
    # The button turns on when the long run starts: the dashboard's state update, sent from inside its cell.
    kernel.read_until(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == button
                      and m["content"]["data"].get("state", {}).get("disabled") is False)
    click = kernel.kc.session.msg("comm_msg", {"comm_id": button,
                                               "data": {"method": "custom", "content": {"event": "click"}}})
    kernel.kc.shell_channel.send(click)
    kernel.finished(blocking)
    assert "RAN 2 interrupted" in kernel.printed(blocking), out + "".join(json.dumps(m["content"])[:300] + "\n" for m in kernel.seen[-40:])   # the baseline #0, #1, then the very long one
    kernel.finished(queued)
    assert "AFTER interrupted" in kernel.printed(queued)     # ran after the blocking cell, not inside it
    order = [m["parent_header"].get("msg_id") for m in kernel.seen if m["msg_type"] == "execute_input"]
    assert order.index(blocking) < order.index(queued)

    # The click stopped that run only: the next cell's run goes to the end.
    following = kernel.execute("exp = loop.run(loop.propose())\n"
                                  "print('NEXT', exp.number, exp.status.value, exp.metric is not None)")
    kernel.finished(following)
    assert "NEXT 3 running True" in kernel.printed(following)


def test_a_kernel_interrupt_while_the_pump_serves_stops_the_cell_and_aborts_the_held_ones(kernel, tmp_path):
    """Kernel > Interrupt during a cell's run while the pump holds the next cell: the run is recorded
    ``interrupted``, the cell ends in RunInterrupted, and the held cell is aborted as ipykernel aborts the queue
    after an error (a Run All stops there), not run."""
    import queue as _queue

    setup = kernel.execute(SETUP.format(path=str(tmp_path / "target"), queue=QUEUE))
    kernel.finished(setup)
    button = kernel.printed(setup).split("STOP-BUTTON", 1)[1].split()[0]
    kernel.kc.execute("exp = loop.run(loop.propose())")              # halve the width: a short run, then
    blocking = kernel.kc.execute("exp = loop.run(loop.propose())")   # the very long one, which blocks
    held = kernel.kc.execute("print('HELD CELL RAN')")
    kernel.read_until(lambda m: m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == blocking)
    kernel.read_until(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == button
                      and m["content"]["data"].get("state", {}).get("disabled") is False)
    kernel.km.interrupt_kernel()
    replies, deadline = {}, time.monotonic() + 120
    while len(replies) < 2 and time.monotonic() < deadline:
        try:
            reply = kernel.kc.get_shell_msg(timeout=1)
        except _queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") in (blocking, held):
            replies[reply["parent_header"]["msg_id"]] = (reply["content"]["status"], reply["content"].get("ename"))
    assert replies.get(blocking) == ("error", "RunInterrupted"), replies
    assert replies.get(held) == ("aborted", None), replies
    check = kernel.execute("print('STATUSES', [e.status.value for e in loop.experiments])")
    kernel.finished(check)
    # the baseline, the short run measured (waiting for decide), the long one interrupted
    assert "STATUSES ['keep', 'running', 'interrupted']" in kernel.printed(check), kernel.printed(check)
    assert "HELD CELL RAN" not in "".join(m["content"].get("text", "") for m in kernel.seen
                                          if m["msg_type"] == "stream")
