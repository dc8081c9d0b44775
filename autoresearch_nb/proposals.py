"""An agent's proposal becomes an experiment record: the file it makes, its diff, and whether it can run."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .agents import Agent, Context, Proposal, QueueExhausted
from .combine import AGENT, Combination, combination
from .errors import AgentError, BudgetExceeded
from .edits import EditError, apply_edits, check_python, content_hash, unified_diff
from .records import Experiment, Status

log = logging.getLogger("autoresearch_nb")


def ask_agent(agent: Agent, context: Context, parent: str, new: Callable[..., Experiment],
              twin: Callable[[str | None], Experiment | None],
              kin: Callable[[str | None], Experiment | None] | None = None, **extra: Any) -> Experiment:
    """Ask ``agent`` for one experiment on ``parent`` (whose file is ``context.source``): an unsaved record made
    by ``new`` (the next number), timed in ``propose_seconds``. Touches no git and no store, so a proposing
    thread can call it. A bug in the agent becomes an ``invalid`` record; a fatal agent error (bad key, spend
    limit) and an empty queue raise."""
    name = getattr(agent, "name", type(agent).__name__)
    asked, t0 = time.time(), time.monotonic()
    planned = planned_combination(context, twin, kin)
    try:
        if planned is not None:  # a stretch without a keep: the near-misses' evidence first (.combine)
            name, proposal = AGENT, Proposal(planned.description, content=planned.content)
        else:
            proposal = agent.propose(context)
    except (AgentError, BudgetExceeded, QueueExhausted):
        raise
    except Exception as e:  # a bug in an agent is recorded, not fatal to an overnight run
        log.exception("agent %s failed", name)
        return new(Status.INVALID, description="(agent error)", parent_sha=parent, agent=name,
                   reason=f"the agent raised {type(e).__name__}: {e}", decided_at=time.time(), created_at=asked,
                   propose_seconds=time.monotonic() - t0, **extra)
    seconds = time.monotonic() - t0
    status, reason, fields = judge_proposal(proposal, context.source, context.editable, twin, kin)
    return new(status, parent_sha=parent, agent=name, reason=reason, created_at=asked, propose_seconds=seconds,
               decided_at=None if status == Status.PROPOSED else time.time(), **fields, **extra)


def planned_combination(context: Context, twin: Callable[[str | None], Experiment | None],
                        kin: Callable[[str | None], Experiment | None] | None = None) -> Combination | None:
    """The loop's own proposal when ``combine_after`` runs went by without a keep (:mod:`.combine`), or None.
    A candidate whose file (or what it runs) was tried already is passed over, so it never becomes a
    ``skipped`` row."""
    cfg = context.config
    if not cfg.combine_after:
        return None

    def known(content: str) -> bool:
        return twin(content_hash(content)) is not None or (kin is not None and kin(content) is not None)

    return combination(context.history, context.source, after=int(cfg.combine_after), maximize=cfg.maximize,
                       known=known, metric=cfg.metric)


MAX_PROPOSAL = 4 << 20   # bytes of one proposed file; a bigger one is invalid and stored by its head and tail
KEPT = 64 << 10          # bytes of each end of an over-cap proposal kept in the store


def capped(content: str) -> str | None:
    """``content`` cut to its first and last :data:`KEPT` bytes with a note, when it is over the cap; else None."""
    data = content.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_PROPOSAL:
        return None
    cut = len(data) - 2 * KEPT
    return (data[:KEPT].decode("utf-8", "ignore") + f"\n[... {cut} bytes cut: proposals are capped at "
            f"{MAX_PROPOSAL >> 20} MB ...]\n" + data[-KEPT:].decode("utf-8", "ignore"))


def judge_proposal(proposal: Proposal, source: str, editable: str,
                   twin: Callable[[str | None], Experiment | None],
                   kin: Callable[[str | None], Experiment | None] | None = None
                   ) -> tuple[Status, str, dict[str, Any]]:
    """(status, reason, record fields) for ``proposal`` made on ``source``.

    ``invalid`` when it does not apply, changes nothing (or nothing the runs read: ``kin`` finds the parent's
    file) or does not compile; ``skipped`` when ``twin`` finds an experiment that already had the same file, or
    ``kin`` one whose file runs the same (:mod:`.effective`); else ``proposed``.
    """
    usage = proposal.usage
    fields: dict[str, Any] = dict(
        description=(proposal.description or "").strip() or "(no description)", model=proposal.model,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_write_tokens=usage.cache_write_tokens, cache_read_tokens=usage.cache_read_tokens,
        cost_usd=usage.cost_usd)
    status, reason, content = Status.PROPOSED, "", None
    try:
        if proposal.error:
            raise EditError(proposal.error)
        content = proposal.content if proposal.content is not None else apply_edits(source, proposal.edits)
        if content == source:
            raise EditError("the proposal changes nothing")
        if capped(content) is None:
            check_python(editable, content)
    except EditError as e:
        status, reason = Status.INVALID, str(e)
    digest = content_hash(content) if content is not None else None
    short = capped(content) if content is not None else None
    if short is not None:  # a flood must not double in the store (content and diff): head and tail, said so
        status, reason = Status.INVALID, (f"the proposed {editable} is {len(content.encode('utf-8', 'surrogatepass'))}"
                                          f" bytes, over the {MAX_PROPOSAL >> 20} MB cap for a proposal; the "
                                          f"store keeps its first and last {KEPT >> 10} KB")
        fields.update(content=short, content_hash=digest, diff="")
    else:
        fields.update(content=content, content_hash=digest,
                      diff=unified_diff(source, content, editable) if content is not None else "")
    same = twin(digest) if status == Status.PROPOSED else None
    if same is not None:
        status, reason = Status.SKIPPED, f"same file as experiment {same.number} ({same.status.value})"
    if status == Status.PROPOSED and kin is not None and editable.endswith(".py"):
        same = kin(content)
        if same is not None and same is kin(source):  # the parent itself, as the runs read it
            status, reason = Status.INVALID, ("the proposal changes nothing the runs read (comments, formatting, "
                                              "or the side of `a if CUDA else b` this device never runs)")
        elif same is not None:
            status, reason = Status.SKIPPED, (f"runs the same as experiment {same.number} ({same.status.value}): "
                                              "it differs only in comments, formatting or a value this device "
                                              "never reads")
    return status, reason, fields
