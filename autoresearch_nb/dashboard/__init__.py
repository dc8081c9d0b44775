"""The notebook experience: a live widget dashboard, console fallback, static reports, and a demo target.

Importing this package imports neither ipywidgets nor matplotlib; :class:`Dashboard` loads them when built.

Modules: :mod:`.plotdata` (plot data, pure), :mod:`.draw` (matplotlib figures), :mod:`.html` (HTML rendering,
pure), :mod:`.screen` (the dashboard's state, no widgets), :mod:`.widgets` (the ipywidgets layout),
:mod:`.static` (the static report for saved notebooks), :mod:`.auto` (widgets or console).

>>> from autoresearch_nb.dashboard import dashboard, static, RunView   # doctest: +SKIP
>>> dash = dashboard(loop)          # widgets in JupyterLab, console lines under papermill  # doctest: +SKIP
>>> static.report(loop)             # the same as autoresearch_nb.report(loop)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from .auto import Console, dashboard, display_mode
from .demo import make_demo_repo
from ..view import RunView

__all__ = ["Dashboard", "Console", "dashboard", "display_mode", "RunView", "make_demo_repo"]
# The static report's module is `static` (it was `report`, a name shared with harness.report() and the
# function); its `report()` is exported at the top level as autoresearch_nb.report.


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from .widgets import Dashboard
        return Dashboard
    raise AttributeError(name)
