"""The Claude agent's request: tool definition, system prompt and context, laid out for prompt caching.

Order, most stable first (a cache hit needs an identical prefix):

1. the tool definition and the system prompt: fixed rules, the run's settings, ``program.md`` verbatim
   (cache breakpoint, 1 h: experiments outlive the 5 min default);
2. the current editable file, which changes only when an experiment is kept (breakpoint, 1 h);
3. the history of every experiment, one line each, in blocks of :data:`CHUNK` experiments. A line never
   changes once written (its delta is against the best *before* that experiment), so full blocks stay
   cached; the breakpoint sits after the last full block (1 h);
4. what changes every call: the best so far, experiments still running, the crashed run's log tail and
   the request itself (breakpoint, 5 min: it only serves the repair turns of this proposal).
"""
from __future__ import annotations

import math
from typing import Any

from ..records import Experiment, Status
from .base import Context

TOOL_NAME = "propose_experiment"
CHUNK = 10
LOG_TAIL_CHARS = 6000
CACHE_1H = {"type": "ephemeral", "ttl": "1h"}
CACHE_5M = {"type": "ephemeral", "ttl": "5m"}

TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": (
        "Propose exactly one experiment: a one-line description of the hypothesis and the change to the "
        "editable file. Prefer small search/replace edits: each `search` must be copied exactly from the "
        "current file (whitespace included) and occur in it exactly once. Give `new_file` (the whole file) "
        "only for a change too large for edits."),
    "input_schema": {
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": "One line, under 100 characters: what you change and why you expect it to help.",
            },
            "edits": {
                "type": "array",
                "description": "Search/replace edits, applied in order.",
                "items": {
                    "type": "object",
                    "properties": {
                        "search": {"type": "string", "description": "Exact text from the current file."},
                        "replace": {"type": "string", "description": "The text that replaces it."},
                    },
                    "required": ["search", "replace"],
                },
            },
            "new_file": {"type": "string", "description": "The whole new file, instead of edits."},
        },
        "required": ["description"],
    },
}

RULES = """\
You are the research agent of an automated research loop. Each turn you propose ONE experiment: a change to
the editable file `{editable}`. The loop (not you) applies the change, commits it, runs `{command}` with a
fixed time budget of {budget} seconds, reads `{metric}` from the run's summary ({better} is better), keeps the
commit if it beats the best so far and reverts it otherwise. Then it asks you for the next experiment.

Rules:
- Change only `{editable}`. Everything else (data, tokenizer, evaluation, harness, the time budget) is fixed.
- Use only what `{editable}` can already import: no new dependencies, no downloads.
- Do not touch how the metric is computed or reported; a change that games the evaluation is worthless.
- The file must still run end to end within the time budget and print its summary.
- Call the `{tool}` tool exactly once per reply, with a short description (your hypothesis) and the change.
- Never propose an experiment already in the history unless you give a new reason in the description.

The research instructions from the human (program.md) follow.
"""


def tools() -> list[dict[str, Any]]:
    return [TOOL]


def system_blocks(context: Context) -> list[dict[str, Any]]:
    """The fixed rules and program.md, with a 1 h cache breakpoint at the end."""
    c = context.config
    rules = RULES.format(editable=context.editable, command=c.command, budget=_num(c.time_budget_s),
                         metric=c.metric, better="higher" if c.maximize else "lower", tool=TOOL_NAME)
    program = context.program.strip() or "(no program.md: use your judgement to improve the metric)"
    return [{"type": "text", "text": rules}, {"type": "text", "text": program, "cache_control": CACHE_1H}]


def user_blocks(context: Context) -> list[dict[str, Any]]:
    """The first user message: file, history, and what is new since the last call."""
    blocks: list[dict[str, Any]] = []
    best = context.best
    which = f" (the best so far, from experiment #{best.number})" if best is not None else ""
    blocks.append({"type": "text", "cache_control": CACHE_1H,
                   "text": f"The current `{context.editable}`{which}:\n\n```\n{context.source.rstrip()}\n```"})

    lines = history_lines(context.history, context.config)
    if lines:
        header = (f"History of this run, oldest first ({len(lines)} experiments; delta is against the best "
                  f"{context.config.metric} before that experiment):\n")
        chunks = [lines[i:i + CHUNK] for i in range(0, len(lines), CHUNK)]
        for i, chunk in enumerate(chunks):
            blocks.append({"type": "text", "text": (header if i == 0 else "") + "\n".join(chunk)})
        full = len(lines) // CHUNK
        if full:
            blocks[full]["cache_control"] = CACHE_1H   # blocks[0] is the file
    else:
        blocks.append({"type": "text", "text": "History of this run: none yet. The first experiment runs the "
                                               "file as it is, to measure the baseline, unless already done."})

    blocks.append({"type": "text", "text": _tail(context), "cache_control": CACHE_5M})
    return blocks


def history_lines(history: tuple[Experiment, ...], config: Any) -> list[str]:
    """One line per experiment: number, status, metric, delta against the best before it, description."""
    out = []
    best: float | None = None
    for e in sorted(history, key=lambda e: e.number):
        metric = f"{config.metric} {e.metric:.6g}" if _finite(e.metric) else ""
        if _finite(e.metric) and e.status.ran:
            delta = f" ({e.metric - best:+.6g} vs best {best:.6g})" if best is not None else " (baseline)"
        else:
            delta = ""
        reason = ""
        if e.status not in (Status.KEEP, Status.DISCARD):
            why = e.error or e.reason
            reason = f" [{_one_line(why, 160)}]" if why else ""
        desc = _one_line(e.description, 200) or "(no description)"
        out.append(f"#{e.number} {e.status.value}{' ' + metric if metric else ''}{delta}{reason}: {desc}")
        if e.status == Status.KEEP and _finite(e.metric) and config.better(float(e.metric), best):
            best = float(e.metric)
    return out


def _tail(context: Context) -> str:
    parts = []
    best = context.best
    if best is not None and _finite(best.metric):
        parts.append(f"Best so far: #{best.number}, {context.config.metric} {best.metric:.6g}.")
    if context.in_flight:
        running = "\n".join(f"#{e.number}: {_one_line(e.description, 200)}" for e in context.in_flight)
        parts.append(f"Running right now (do not propose these again):\n{running}")
    if context.last_log_tail:
        tail = context.last_log_tail[-LOG_TAIL_CHARS:]
        parts.append("The last experiment crashed. The end of its log:\n\n```\n" + tail.rstrip() + "\n```\n\n"
                     "Fix the cause if the idea is still worth it, or try something else; don't repeat it as is.")
    parts.append(f"Propose the next experiment now: call `{TOOL_NAME}` once.")
    return "\n\n".join(parts)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _one_line(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _num(x: float) -> str:
    return f"{x:g}"
