# pytest tests/test_waiting.py -q
"""What a main-thread wait does meanwhile (autoresearch_nb.waiting): the installed pump's tick, called from inside
real waits (a subprocess run, a thread join), only on the main thread, never nested, and never fatal. The pump here
is the edge (the kernel's message queue) replaced by a recorder; tests/test_dashboard_pump.py uses a real kernel."""
from __future__ import annotations

import contextlib
import sys
import threading
import time

import pytest

from autoresearch_nb import waiting
from autoresearch_nb.runner import Run


class Pump:
    """A pump that counts its ticks and runs ``on_tick`` at each (what a served click does)."""

    def __init__(self, on_tick=lambda n: None, fail_enter: bool = False):
        self.ticks, self.entered, self.exited = 0, 0, 0
        self.on_tick, self.fail_enter = on_tick, fail_enter

    @contextlib.contextmanager
    def __call__(self):
        if self.fail_enter:
            raise RuntimeError("ipykernel moved its internals")
        self.entered += 1
        try:
            yield self.tick
        finally:
            self.exited += 1

    def tick(self):
        self.ticks += 1
        self.on_tick(self.ticks)


@pytest.fixture
def pump():
    made = []

    def install(**kw):
        p = Pump(**kw)
        made.append(waiting.install(p))
        return p
    yield install
    for remove in made:
        remove()
    assert not waiting.installed()


def test_a_click_served_inside_a_runs_wait_ends_that_run(tmp_path, pump):
    """The pump's tick runs inside Run.wait on the main thread: a tick that cancels (a Stop click's handler)
    ends a 60-second subprocess as interrupted."""
    holder = {}
    p = pump(on_tick=lambda n: holder["run"].cancel() if n == 3 else None)
    holder["run"] = run = Run([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, tmp_path / "log",
                              timeout_s=120)
    result = run.wait()
    assert result.interrupted and result.error == "interrupted"
    assert p.ticks >= 3 and p.entered == p.exited == 1


def test_waits_on_other_threads_never_pump(tmp_path, pump):
    p = pump()
    out = {}

    def other():
        out["r"] = Run([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path, tmp_path / "log",
                       timeout_s=30).wait()
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert out["r"].exit_code == 0 and p.ticks == 0 and p.entered == 0


def test_a_wait_inside_a_tick_does_not_pump_again(pump):
    """A click's handler that itself waits (on the main thread, inside the pump) must not re-enter the pump."""
    inner = []

    def on_tick(n):
        if n == 1:
            with waiting.waiting() as tick:
                before = p.ticks
                tick()
                tick()
                inner.append(p.ticks == before)  # the inner tick is a no-op
    p = pump(on_tick=on_tick)
    t = threading.Thread(target=time.sleep, args=(0.4,))
    t.start()
    waiting.join(t)
    assert inner == [True] and p.entered == 1 and p.ticks >= 1


def test_join_ticks_until_the_thread_ends_and_honours_its_timeout(pump):
    p = pump()
    t = threading.Thread(target=time.sleep, args=(0.5,))
    t.start()
    waiting.join(t)
    assert not t.is_alive() and p.ticks >= 1
    slow = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    slow.start()
    waiting.join(slow, timeout=0.3)
    assert slow.is_alive()


def test_a_pump_that_cannot_start_leaves_the_wait_working(tmp_path, pump, caplog):
    pump(fail_enter=True)
    result = Run([sys.executable, "-c", "print('ok')"], tmp_path, tmp_path / "log", timeout_s=30).wait()
    assert result.exit_code == 0
    assert "buttons act when the cell ends" in caplog.text


def test_a_failing_tick_does_not_end_the_run(tmp_path, pump, caplog):
    def boom(n):
        raise ValueError("a handler broke")
    p = pump(on_tick=boom)
    result = Run([sys.executable, "-c", "import time; time.sleep(0.5); print('done')"], tmp_path,
                 tmp_path / "log", timeout_s=30).wait()
    assert result.exit_code == 0 and not result.interrupted and p.ticks >= 1
    assert "a handler broke" in caplog.text


def test_without_a_pump_nothing_is_installed_and_waits_are_plain(tmp_path):
    assert not waiting.installed()
    with waiting.waiting() as tick:
        assert tick() is None
