"""Typed errors. A failed *experiment* is data (a row with a status); these are for a broken *harness*."""
from __future__ import annotations


class AutoresearchError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(AutoresearchError):
    """A configuration value, flag or config file is wrong."""


class GitError(AutoresearchError):
    """A git command failed. Carries the command, its exit code and its output."""

    def __init__(self, message: str, *, command: str = "", code: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        self.command, self.code, self.stdout, self.stderr = command, code, stdout, stderr
        detail = f" (command: {command!r}, exit {code})" if command else ""
        tail = f"\n{stderr.strip()}" if stderr.strip() else ""
        super().__init__(f"{message}{detail}{tail}")


class StoreError(AutoresearchError):
    """The experiment store is unreadable or inconsistent."""


class AgentError(AutoresearchError):
    """An agent cannot go on (bad key, spend limit, bad request). Stops the loop; nothing is lost."""


class BudgetExceeded(AutoresearchError):
    """The next agent call would pass ``max_cost_usd``."""


class StateError(AutoresearchError):
    """A verb was called in an order that cannot work (running what was never proposed, proposing before the
    baseline). A verb already applied to an experiment is not an error: it returns the stored state."""


class SandboxError(AutoresearchError):
    """The sandbox cannot be set up as configured (a writable path over the checkout, Landlock demanded where
    the kernel has none)."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by an interrupt (a notebook's Kernel > Interrupt, Ctrl-C), already recorded as
    ``interrupted`` and its processes ended. Still a KeyboardInterrupt, so "Run All" and papermill stop; IPython
    shows it as one line (``_render_traceback_``) instead of a traceback through the library's internals."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def described(e: BaseException) -> str:
    """``Type: message`` of an exception as the loop reports it; any interrupt reads ``KeyboardInterrupt``."""
    name = "KeyboardInterrupt" if isinstance(e, KeyboardInterrupt) else type(e).__name__
    return f"{name}: {e}"
