"""autoresearch_nb: the Karpathy Loop, Jupyter-native.

>>> from autoresearch_nb import Loop            # doctest: +SKIP
>>> loop = Loop.open(".", tag="nov27", agent="tuner", time_budget_s=60)   # doctest: +SKIP
>>> loop.optimize(n=10); loop.results          # doctest: +SKIP

Every public name is imported on first use (module ``__getattr__``): ``import autoresearch_nb.harness``, which
train.py does in every run, must not pay for git, optuna, pandas or the agents, and a GPU box that only trains
need not have them installed.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

logging.getLogger("autoresearch_nb").addHandler(logging.NullHandler())

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_LAZY = {
    "Loop": "loop", "load_results": "view", "RunView": "view", "Config": "config",
    "Experiment": "records", "Status": "records", "CurvePoint": "records", "RunResult": "records",
    "Event": "events", "EventKind": "events",
    "Agent": "agents.base", "Context": "agents.base", "Proposal": "agents.base", "Usage": "agents.base",
    "QueueExhausted": "agents.base", "Edit": "edits", "ConsolePrinter": "console",
    "AutoresearchError": "errors", "ConfigError": "errors", "GitError": "errors", "StoreError": "errors",
    "AgentError": "errors", "BudgetExceeded": "errors", "StateError": "errors", "IncomparableRun": "provenance",
    "Dashboard": "dashboard", "make_demo_repo": "dashboard", "report": "dashboard.static",
    "CurveView": "dashboard.plotdata",
}

__all__ = [
    "Loop", "load_results", "Config", "Experiment", "Status", "CurvePoint", "RunResult", "Event", "EventKind",
    "Agent", "Context", "Proposal", "Usage", "Edit", "QueueExhausted", "ConsolePrinter",
    "AutoresearchError", "ConfigError", "GitError", "StoreError", "AgentError", "BudgetExceeded", "StateError",
    "IncomparableRun", "Dashboard", "RunView", "report", "make_demo_repo", "CurveView",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily below
    from .agents.base import Agent, Context, Proposal, QueueExhausted, Usage
    from .config import Config
    from .console import ConsolePrinter
    from .dashboard import Dashboard, make_demo_repo
    from .dashboard.plotdata import CurveView
    from .dashboard.static import report
    from .edits import Edit
    from .errors import AgentError, AutoresearchError, BudgetExceeded, ConfigError, GitError, StateError, StoreError
    from .events import Event, EventKind
    from .loop import Loop
    from .provenance import IncomparableRun
    from .records import CurvePoint, Experiment, RunResult, Status
    from .view import RunView, load_results


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autoresearch_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # resolved once; later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
