"""autoresearch_nb: the Karpathy Loop, Jupyter-native.

>>> from autoresearch_nb import Loop            # doctest: +SKIP
>>> loop = Loop.open(".", tag="nov27", agent="tuner", time_budget_s=60)   # doctest: +SKIP
>>> loop.optimize(n=10); loop.results          # doctest: +SKIP
"""
from __future__ import annotations

import logging

from .agents.base import Agent, Context, Proposal, QueueExhausted, Usage
from .config import Config
from .console import ConsolePrinter
from .edits import Edit
from .errors import AgentError, AutoresearchError, BudgetExceeded, ConfigError, GitError, StoreError
from .events import Event, EventKind
from .loop import Loop
from .view import RunView, load_results
from .records import CurvePoint, Experiment, RunResult, Status

logging.getLogger("autoresearch_nb").addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = [
    "Loop", "load_results", "Config", "Experiment", "Status", "CurvePoint", "RunResult", "Event", "EventKind",
    "Agent", "Context", "Proposal", "Usage", "Edit", "QueueExhausted", "ConsolePrinter",
    "AutoresearchError", "ConfigError", "GitError", "StoreError", "AgentError", "BudgetExceeded",
    "Dashboard", "RunView", "report", "make_demo_repo",
]

_DASHBOARD = {"Dashboard", "report", "make_demo_repo"}


def __getattr__(name: str):  # lazy: `import autoresearch_nb` never imports ipywidgets or matplotlib
    if name in _DASHBOARD:
        if name == "report":
            from .dashboard.static import report
            return report
        from . import dashboard as _dashboard
        return getattr(_dashboard, name)
    raise AttributeError(f"module 'autoresearch_nb' has no attribute {name!r}")
