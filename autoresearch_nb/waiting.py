"""What a blocking wait on the main thread does meanwhile: by default nothing; in a notebook with a live
dashboard, it handles the widgets' messages, so a button clicked while a cell blocks (``loop.run(exp)``,
``dash.wait()``) acts now rather than when the cell ends.

The core only knows "something to call while waiting"; the dashboard installs what that is
(:mod:`autoresearch_nb.dashboard.pump`), so the core never imports ipywidgets or ipykernel. Waits on other threads
(the background loop, the workers) never pump: there the kernel is free and takes the clicks itself.

>>> with waiting() as tick:          # doctest: +SKIP
...     while not done(): tick(); time.sleep(0.05)
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, ContextManager, Iterator

log = logging.getLogger(__name__)

Pump = Callable[[], ContextManager[Callable[[], None]]]
EVERY_S = 0.1  # how often a wait hands the widgets their messages: a click acts within about this

_lock = threading.Lock()
_pump: Pump | None = None
_active = threading.local()


def install(pump: Pump) -> Callable[[], None]:
    """Make main-thread waits call ``pump``'s tick; returns the function that removes it (the last one installed
    wins: every dashboard in a kernel shares the one kernel, so any pump serves them all)."""
    global _pump
    with _lock:
        _pump = pump

    def remove() -> None:
        global _pump
        with _lock:
            if _pump is pump:
                _pump = None
    return remove


def installed() -> bool:
    return _pump is not None


def _idle() -> None:
    return None


@contextlib.contextmanager
def waiting() -> Iterator[Callable[[], None]]:
    """A tick to call often while blocking: it pumps (at most every :data:`EVERY_S`) when a pump is installed,
    this is the main thread, and no outer wait is already pumping (a click's handler that waits does not nest)."""
    pump = _pump
    if pump is None or threading.current_thread() is not threading.main_thread() \
            or getattr(_active, "on", False):
        yield _idle
        return
    try:
        context = pump()
        tick = context.__enter__()
    except Exception as e:  # the kernel's internals changed under the pump: waits still work, clicks wait
        log.warning("widgets cannot be served while a cell waits (%s); buttons act when the cell ends", e)
        yield _idle
        return
    _active.on = True
    last = [0.0]

    def throttled() -> None:
        now = time.monotonic()
        if now - last[0] >= EVERY_S:
            last[0] = now
            try:
                tick()
            except Exception as e:  # a failing handler must not end the run it waits for
                log.warning("handling the widgets' messages failed: %s", e)
    try:
        yield throttled
    finally:
        _active.on = False
        context.__exit__(None, None, None)


def join(thread: threading.Thread, timeout: float | None = None) -> None:
    """``thread.join(timeout)``, ticking while it waits (see :func:`waiting`)."""
    with waiting() as tick:
        if tick is _idle:
            thread.join(timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
            thread.join(0.05)
            tick()
