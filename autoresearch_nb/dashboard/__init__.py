"""The notebook experience: a live widget dashboard, console fallback, static reports, and a demo target.

Importing this package imports neither ipywidgets nor matplotlib; :class:`Dashboard` loads them when built.

>>> from autoresearch_nb.dashboard import dashboard, report, RunView   # report: the module  # doctest: +SKIP
>>> dash = dashboard(loop)          # widgets in JupyterLab, console lines under papermill  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from .auto import Console, dashboard, display_mode
from .demo import make_demo_repo
from ..view import RunView

__all__ = ["Dashboard", "Console", "dashboard", "display_mode", "RunView", "make_demo_repo"]
# The module `report` (static charts and tables) stays reachable as autoresearch_nb.dashboard.report;
# its `report()` function is exported at the top level as autoresearch_nb.report.


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from .widgets import Dashboard
        return Dashboard
    raise AttributeError(name)
