"""Buttons that act while a cell blocks: the kernel's widget messages handled during a main-thread wait.

A cell that runs ``loop.run(exp)`` holds the kernel's main thread, and ipykernel reads a button's click only
between cells; so Stop, clicked 12 s into a 20 s run, used to act when the run had finished. While a dashboard is
live in an IPython kernel, every main-thread wait of the loop (:mod:`autoresearch_nb.waiting`: the run, its
verification, ``dash.wait()``, ``loop.wait()``) calls :meth:`KernelPump.tick` a few times a second. A tick moves the
shell messages that arrived onto the kernel's own queue and takes them off again: widget messages (``comm_*``) are
handled at once, on a helper thread (as ipykernel would between cells); anything else (the next cell of a Run All,
a completion request) is held and put back at the front of the kernel's queue when the cell ends, in its order, so
the kernel itself runs it then: with its busy/idle status, and aborted if this cell failed.

The idea is jupyter-ui-poll's; it is written here because that package replays held cells on a side task, and a
wait inside a replayed cell then served no click (its messages went to the kernel's idle dispatcher): every cell
after the first waiting one in a Run All. This leans on ipykernel 6's message queue (``msg_queue``,
``shell_stream``, ``schedule_dispatch``; ipykernel 7 reorganised them): pyproject.toml pins ``ipykernel<7`` and
``tests/test_dashboard_pump.py`` checks it in a real kernel. On another kernel the pump is not installed, with a
warning: buttons then act when the cell ends.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any, Callable

from .. import waiting

log = logging.getLogger("autoresearch_nb")
COMMS = frozenset({"comm_open", "comm_msg", "comm_close"})
_warned = False


def kernel() -> Any:
    """The IPython kernel this code runs in (JupyterLab, papermill), or None (a terminal, a script)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def supported(k: Any) -> bool:
    """ipykernel 6: one FIFO message queue fed by the shell stream, drained by one dispatcher."""
    return all(hasattr(k, name) for name in ("msg_queue", "shell_stream", "schedule_dispatch", "dispatch_shell",
                                            "get_parent", "set_parent", "session")) \
        and hasattr(k.msg_queue, "get_nowait")


class KernelPump:
    """One cell's pump: created at the cell's first wait, ended (held messages given back) when the cell ends."""

    def __init__(self, k: Any) -> None:
        self.kernel = k
        self.shell = k.shell
        self.held: list[Any] = []
        # The cell's parent message, to give output back to it after each handled message (ipykernel keeps the
        # routing identities beside it; there is no public getter).
        self.parent = k.get_parent("shell")
        self.idents = getattr(k, "_parent_ident", {}).get("shell", b"")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="autoresearch-widget-messages",
                                       daemon=True)
        self.thread.start()
        self.shell.events.register("post_run_cell", self.end)

    def tick(self) -> None:
        k = self.kernel
        k.shell_stream.flush()  # what arrived on the socket, through the kernel's own on_recv, onto msg_queue
        while True:
            try:
                item = k.msg_queue.get_nowait()
            except Exception:  # tornado's QueueEmpty
                break
            if self._kind(item) in COMMS:
                self._handle(item)
            else:
                self.held.append(item)

    def _kind(self, item: Any) -> str:
        _idx, dispatch, args = item
        if dispatch != self.kernel.dispatch_shell or not args:
            return ""  # the kernel's own scheduled work (its abort timer): held, in order
        try:
            _idents, frames = self.kernel.session.feed_identities(args[0], copy=False)
            return self.kernel.session.deserialize(frames, content=False, copy=False)["header"]["msg_type"]
        except Exception:
            return ""

    def _handle(self, item: Any) -> None:
        _idx, dispatch, args = item
        try:
            asyncio.run_coroutine_threadsafe(dispatch(*args), self.loop).result(timeout=30)
        except Exception as e:  # a widget handler's error must not end the cell's run
            log.warning("a widget message failed: %s", e)
        finally:
            k = self.kernel
            k.set_parent(self.idents, self.parent, channel="shell")  # output goes to the cell again
            # the handled message said "idle" to the front end; the cell is still running
            k.session.send(k.iopub_socket, "status", {"execution_state": "busy"}, parent=self.parent,
                           ident=f"kernel.{k.ident}.status".encode())

    def end(self, *_: Any) -> None:
        """At the cell's end: the held messages go back to the front of the kernel's queue, in order."""
        self.shell.events.unregister("post_run_cell", self.end)
        global _current
        if _current is self:
            _current = None
        k = self.kernel
        later = []
        while True:
            try:
                later.append(k.msg_queue.get_nowait())
            except Exception:
                break
        for item in self.held + later:
            k.msg_queue.put_nowait(item)
        self.held = []
        self.loop.call_soon_threadsafe(self.loop.stop)


_current: KernelPump | None = None


class _Serving:
    """The context :mod:`.waiting` enters around one wait: the cell's pump (made at its first wait)."""

    def __init__(self, k: Any) -> None:
        self.kernel = k

    def __enter__(self) -> Callable[[], None]:
        global _current
        if _current is None:
            _current = KernelPump(self.kernel)
        return _current.tick

    def __exit__(self, *exc: Any) -> None:
        return None


def install() -> Callable[[], None]:
    """Serve widget messages during main-thread waits, when in a kernel that allows it; returns what undoes it
    (a no-op elsewhere)."""
    global _warned
    k = kernel()
    if k is None:
        return lambda: None
    if not supported(k):
        if not _warned:
            _warned = True
            log.warning("this kernel (ipykernel %s) cannot serve the dashboard's buttons while a cell blocks: "
                        "they act when the cell ends (pip install 'ipykernel<7', or run with loop.start())",
                        getattr(sys.modules.get("ipykernel"), "__version__", "?"))
        return lambda: None
    return waiting.install(lambda: _Serving(k))
