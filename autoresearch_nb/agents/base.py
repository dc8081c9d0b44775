"""The agent protocol: ``propose(context) -> Proposal``, and an optional ``tell(experiment)``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

from ..config import Config
from ..edits import Edit
from ..errors import AutoresearchError
from ..records import CurveSummary, Experiment


@dataclass(frozen=True)
class Context:
    """What an agent sees when asked for one experiment."""

    program: str                          # program.md, verbatim ("" if the repo has none)
    editable: str                         # the editable file's path, relative to the repo
    source: str                           # its current content (the best kept commit)
    history: tuple[Experiment, ...]       # every experiment of this run so far, oldest first
    config: Config
    best: Experiment | None = None
    last_log_tail: str | None = None      # tail of the last run's log when it crashed
    in_flight: tuple[Experiment, ...] = ()  # experiments running right now (parallel workers)
    cost_so_far_usd: float = 0.0
    # how the runs went, filled by the loop (agents never read the store): each decided experiment's curve summary
    # by number, and the run's noise floor as the store keeps it (``sigma``, ``mad_sigma``, ``n``...; None: none yet)
    curves: Mapping[int, CurveSummary] = field(default_factory=dict)
    noise: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of the agent calls behind one proposal."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.cache_read_tokens + other.cache_read_tokens, self.cost_usd + other.cost_usd)


@dataclass(frozen=True)
class Proposal:
    """One experiment as the agent proposes it: a description and either edits or the whole new file.

    ``error`` set means the agent tried and failed (after its own repair turns): the loop records an
    ``invalid`` experiment with that reason. ``content``, when given, wins over ``edits``.
    """

    description: str
    edits: tuple[Edit, ...] = ()
    content: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """Anything with a ``name`` and a ``propose`` method. ``tell`` is optional, and so is ``warm()``: paying the
    first proposal's fixed costs (an SDK's import, a client) ahead of time; the loop calls it on a thread while
    the baseline runs, so its errors are ignored there and met again by ``propose``."""

    name: str

    def propose(self, context: Context) -> Proposal:  # pragma: no cover - protocol
        ...


class QueueExhausted(AutoresearchError):
    """The agent has nothing more to propose; the loop ends normally."""
