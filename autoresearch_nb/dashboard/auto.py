"""Pick the display like ``tqdm.auto``: the widget dashboard in a live Jupyter frontend, a console printer
anywhere else (a terminal, papermill, ``nbconvert --execute``), where widget state would not survive.

Rules, first match wins: ``mode`` given as ``"widgets"`` or ``"console"``; the environment variable
``AUTORESEARCH_NB_DISPLAY``; not inside an IPython kernel -> console; the cell was sent by an interactive
frontend (JupyterLab, Notebook 7 and VS Code send a ``cellId`` with each execution, papermill does not) and
ipywidgets imports -> widgets; otherwise console.

>>> show = dashboard(loop)    # doctest: +SKIP
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..console import ConsolePrinter
from .. import environ

if TYPE_CHECKING:
    from ..loop import Loop
    from .widgets import Dashboard

ENV = "AUTORESEARCH_NB_DISPLAY"
MODES = ("auto", "widgets", "console")


def _kernel() -> Any:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    ip = ipython.get_ipython()
    if ip is None or "IPKernelApp" not in getattr(ip, "config", {}):
        return None
    return getattr(ip, "kernel", None)


def _from_frontend(kernel: Any) -> bool:
    """True when the cell being executed came from an interactive notebook frontend."""
    try:
        parent = kernel.get_parent("shell")
    except TypeError:  # an older ipykernel: no channel argument
        parent = kernel.get_parent()
    except Exception:
        return False
    meta = (parent or {}).get("metadata") or {}
    return bool(meta.get("cellId") or meta.get("cell_id"))


def display_mode(mode: str = "auto") -> str:
    """``"widgets"`` or ``"console"``, following the rules in this module's docstring."""
    if mode not in MODES:
        raise ValueError(f"display mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode
    env = environ.get(ENV).lower()
    if env in ("widgets", "console"):
        return env
    kernel = _kernel()
    if kernel is None or not _from_frontend(kernel):
        return "console"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "console"
    return "widgets"


class Console:
    """The console display: a :class:`~autoresearch_nb.ConsolePrinter` subscribed to the loop."""

    interactive = False

    def __init__(self, loop: "Loop", stream: Any = None) -> None:
        self.loop = loop
        self.printer = ConsolePrinter.for_loop(loop, stream)
        self._unsubscribe = loop.subscribe(self.printer)

    def baseline(self) -> Any:
        """Run the baseline here (no buttons to keep free: the same as ``loop.baseline()``)."""
        return self.loop.baseline()

    def wait(self, timeout: float | None = None) -> None:
        """Nothing runs in the background of a console display."""

    def close(self) -> None:
        self._unsubscribe()

    def __repr__(self) -> str:
        return f"<console display for run {self.loop.tag!r}>"


def dashboard(loop: "Loop", mode: str = "auto", display: bool = True, **kwargs: Any) -> "Dashboard | Console":
    """Attach the right display to ``loop`` and show it. ``kwargs`` go to :class:`~.widgets.Dashboard`.

    Returns the display; its ``interactive`` attribute says which one it is.
    """
    if display_mode(mode) == "widgets":
        from .widgets import Dashboard

        dash = Dashboard(loop, **kwargs)
        if display:
            dash.display()
        return dash
    return Console(loop)
