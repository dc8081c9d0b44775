"""The Claude agent's request: tool definition, system prompt and context, laid out for prompt caching.

Order, most stable first (a cache hit needs an identical prefix):

1. the tool definition and the system prompt: fixed rules, the run's settings, ``program.md`` verbatim
   (cache breakpoint, 1 h: experiments outlive the 5 min default);
2. the current editable file, which changes only when an experiment is kept (breakpoint, 1 h);
3. the history: the recent experiments one line each (status, metric, delta against the best *before* it,
   the description, and how the run went: the loss at 25/50/75/100 % of the budget, tokens/s, peak memory,
   where a pruned run stopped), in blocks of :data:`CHUNK`; older ones summarised per :data:`EPOCH`
   experiments (counts, the kept changes). A line or an epoch's summary never changes once written, and the
   line-by-line part starts at an epoch boundary, so the prefix stays cached until the next epoch closes;
   the breakpoint sits after the last full block (1 h). At most :data:`RECENT` + :data:`EPOCH` experiments
   are shown line by line, so a prompt at experiment 1,000 stays about the size of one at experiment 80
   (tests/test_agents_claude.py measures it);
4. what changes every call: the best so far, the noise floor in plain numbers, the near-misses (discarded
   changes that improved the mean within the noise), experiments still running, the crashed run's log tail
   and the request itself (breakpoint, 5 min: it only serves the repair turns of this proposal).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from ..records import QUARTERS, CurveSummary, Experiment, Status
from .base import Context

TOOL_NAME = "propose_experiment"
CHUNK = 10
RECENT = 30        # at least this many latest experiments are shown line by line
EPOCH = 50         # older ones are summarised in blocks of this many (a multiple of CHUNK)
KEPT_PER_EPOCH = 4  # kept changes named in one epoch's summary (the rest counted)
NEAR_MISSES = 5
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

    exps = sorted(context.history, key=lambda e: e.number)
    lines = history_lines(exps, context.config, context.curves)
    if lines:
        # no count in the header: it would change every call and void the cached prefix behind it
        cut = max(0, (len(lines) - RECENT) // EPOCH * EPOCH)
        header = (f"History of this run, oldest first (delta is against the best {context.config.metric} before "
                  "that experiment; {loss@25/50/75/100%: the training loss at those shares of the time budget}):\n")
        if cut:
            befores = bests_before(exps, context.config)
            epochs = [epoch_summary(exps[i:i + EPOCH], befores[i:i + EPOCH], context.config)
                      for i in range(0, cut, EPOCH)]
            blocks.append({"type": "text", "text": header + f"Experiments #{exps[0].number}-#{exps[cut - 1].number}"
                           f", summarised in blocks of {EPOCH}:\n" + "\n".join(epochs)})
            header = "Then, one line each:\n"
        recent = lines[cut:]
        chunks = [recent[i:i + CHUNK] for i in range(0, len(recent), CHUNK)]
        first = len(blocks)
        for i, chunk in enumerate(chunks):
            blocks.append({"type": "text", "text": (header if i == 0 else "") + "\n".join(chunk)})
        full = len(recent) // CHUNK
        if full:
            blocks[first + full - 1]["cache_control"] = CACHE_1H
        elif cut:
            blocks[first - 1]["cache_control"] = CACHE_1H  # the epochs' summary
    else:
        blocks.append({"type": "text", "text": "History of this run: none yet. The first experiment runs the "
                                               "file as it is, to measure the baseline, unless already done."})

    blocks.append({"type": "text", "text": _tail(context), "cache_control": CACHE_5M})
    return blocks


def bests_before(history: list[Experiment], config: Any) -> list[float | None]:
    """The best kept metric before each experiment of ``history`` (sorted by number), then the best after all."""
    out: list[float | None] = []
    best: float | None = None
    for e in history:
        out.append(best)
        if e.status == Status.KEEP and _finite(e.metric) and config.better(float(e.metric), best):
            best = float(e.metric)
    return out + [best]


def history_lines(history: Iterable[Experiment], config: Any,
                  curves: Mapping[int, CurveSummary] | None = None) -> list[str]:
    """One line per experiment: number, status, metric, delta against the best before it, why it failed, the
    description, and how its run went (:func:`run_facts`)."""
    exps = sorted(history, key=lambda e: e.number)
    out = []
    for e, best in zip(exps, bests_before(exps, config)):
        metric = f"{config.metric} {e.metric:.6g}" if _finite(e.metric) else ""
        if _finite(e.metric) and e.status.ran:
            delta = f" ({e.metric - best:+.6g} vs best {best:.6g})" if best is not None else " (baseline)"
        else:
            delta = ""
        if len(e.runs) > 1:
            delta += f" (over {len(e.runs)} runs)"
        reason = ""
        if e.status not in (Status.KEEP, Status.DISCARD):
            why = e.error or e.reason
            reason = f" [{_one_line(why, 160)}]" if why else ""
        desc = _one_line(e.description, 200) or "(no description)"
        facts = run_facts(e, (curves or {}).get(e.number))
        out.append(f"#{e.number} {e.status.value}{' ' + metric if metric else ''}{delta}{reason}: {desc}"
                   + (f" {{{facts}}}" if facts else ""))
    return out


def run_facts(e: Experiment, curve: CurveSummary | None) -> str:
    """How a run went, in one short phrase: the loss at 25/50/75/100 % of the budget, where a pruned run
    stopped, tokens/s and peak memory (from its summary). Empty when there is nothing to say."""
    parts = []
    if curve is not None:
        losses = "/".join("-" if x is None else f"{x:.4g}" for x in curve.losses)
        parts.append(f"loss@{'/'.join(str(round(q * 100)) for q in QUARTERS)}%: {losses}")
        if e.status == Status.PRUNED:
            parts.append(f"stopped early at {min(curve.reached, 1.0):.0%} of the budget")
    summary = e.summary or {}
    tokens, seconds = summary.get("total_tokens_M"), summary.get("training_seconds")
    if _finite(tokens) and _finite(seconds) and seconds > 0:
        parts.append(f"{_si(tokens * 1e6 / seconds)} tok/s")
    elif _finite(summary.get("tok_per_sec")):
        parts.append(f"{_si(summary['tok_per_sec'])} tok/s")
    peak = summary.get("peak_memory_mb")
    if _finite(peak):
        parts.append(f"peak {peak / 1024:.3g} GB" if peak >= 1024 else f"peak {peak:.0f} MB")
    return "; ".join(parts)


def epoch_summary(exps: list[Experiment], befores: list[float | None], config: Any) -> str:
    """One line for a block of old experiments: how each status counted, and the kept changes by name."""
    counts: dict[str, int] = {}
    for e in exps:
        counts[e.status.value] = counts.get(e.status.value, 0) + 1
    kept = [f"#{e.number} {_delta(e, b)}: {_one_line(e.description, 90)}"
            for e, b in zip(exps, befores) if e.status == Status.KEEP]
    shown = kept[:KEPT_PER_EPOCH] + ([f"and {len(kept) - KEPT_PER_EPOCH} more"] if len(kept) > KEPT_PER_EPOCH else [])
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    line = f"#{exps[0].number}-#{exps[-1].number}: {tally}"
    return line + (f"; kept: {'; '.join(shown)}" if shown else "")


def near_misses(history: Iterable[Experiment], config: Any, limit: int = NEAR_MISSES) -> list[str]:
    """The discarded changes whose decided metric beat the best before them (within the noise, so not kept):
    what a combination or a second look might turn into a keep. Those measured against the current best come
    first (an older one was beaten by a later keep), then the largest gains, then the latest."""
    exps = sorted(history, key=lambda e: e.number)
    befores = bests_before(exps, config)
    now = befores[-1]
    found = []
    for e, best in zip(exps, befores):
        if e.status == Status.DISCARD and _finite(e.metric) and best is not None \
                and config.better(float(e.metric), best):
            found.append((best != now, -abs(float(e.metric) - best), -e.number, e, best))
    found.sort(key=lambda t: t[:3])
    out = []
    for *_, e, best in found[:limit]:
        sigma = f", {e.effect_sigma:.2g}σ" if _finite(e.effect_sigma) else ""
        out.append(f"#{e.number} {config.metric} {e.metric:.6g} ({_delta(e, best)} vs best {best:.6g}{sigma}): "
                   f"{_one_line(e.description, 120)}")
    return out


def noise_text(context: Context) -> str:
    """The noise floor in plain numbers: how much one unchanged file's runs spread, and the gain the last
    decision needed."""
    metric = context.config.metric
    parts = []
    noise = context.noise or {}
    sigma, robust, n = noise.get("sigma"), noise.get("mad_sigma"), noise.get("n")
    if _finite(sigma):
        more = f", robust σ {robust:.3g}" if _finite(robust) else ""
        runs = f" over {n} runs" if isinstance(n, int) and n else ""
        parts.append(f"Noise: runs of one unchanged file spread by σ = {sigma:.3g} {metric}{more}{runs}.")
    last = next((e for e in sorted(context.history, key=lambda e: -e.number)
                 if e.status in (Status.KEEP, Status.DISCARD) and _finite(e.threshold)), None)
    if last is not None:
        parts.append(f"The last decision (#{last.number}) needed a gain over {last.threshold:.3g} {metric} to keep a "
                     "change; a smaller one is within the noise.")
    if not parts:
        return "Noise: not measured in this run; a change is kept when it beats the best at all."
    return " ".join(parts)


def _tail(context: Context) -> str:
    parts = []
    best = context.best
    if best is not None and _finite(best.metric):
        parts.append(f"Best so far: #{best.number}, {context.config.metric} {best.metric:.6g} "
                     f"({len(context.history)} experiments so far).")
    if context.history:
        parts.append(noise_text(context))
    misses = near_misses(context.history, context.config)
    if misses:
        parts.append("Near-misses (discarded: they improved the mean, but within the noise):\n" + "\n".join(misses))
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


def _delta(e: Experiment, best: float | None) -> str:
    return f"{e.metric - best:+.4g}" if best is not None and _finite(e.metric) else "baseline"


def _si(x: float) -> str:
    """12345 -> '12.3k'."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"
