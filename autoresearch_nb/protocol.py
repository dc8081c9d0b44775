"""The text protocol between a run and the loop, read and written in one place.

While training, a run redraws a progress line with ``\\r`` (``step 00012 (4.0%) | loss: 3.50 | ...``). At the
end it prints a line ``---`` and then ``key: value`` lines, the summary; a diverged run prints ``FAIL`` on a
line of its own. A crash ends with a Python traceback whose last line is the error. Karpathy's ``train.py``
speaks the same protocol; its keys are read unchanged (``peak_vram_mb`` also fills ``peak_memory_mb``).

This module imports nothing but the standard library: the runner (in the loop's process) and the harness (in
the run's process) both use it, and neither side may pull the other's dependencies in.

>>> parse_summary("step 5 | loss: 2.0\\r\\n---\\nval_bpb: 0.9979\\nnum_steps: 953\\n")
{'val_bpb': 0.9979, 'num_steps': 953.0}
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

SUMMARY_START = "---"
FAIL = "FAIL"
# Karpathy's summary name -> ours, so his train.py fills the same columns (results.tsv's memory_gb).
KEY_ALIASES = {"peak_vram_mb": "peak_memory_mb"}

# The lookbehind starts a key only at the start of a word: without it a long line of word characters costs
# quadratic backtracking (0.5 ms a line; a flood of log output then stalls the run behind its own reader).
_KV = re.compile(r"(?<![A-Za-z0-9_/.-])([A-Za-z_][A-Za-z0-9_/.-]*)\s*[:=]\s*"
                 r"(-?[0-9][0-9,]*\.?[0-9]*(?:[eE][-+]?[0-9]+)?|nan|inf)(%|ms|s)?\b", re.I)
_STEP = re.compile(r"\bstep\s*[: ]?\s*(\d+)", re.I)
_PERCENT = re.compile(r"\(\s*(\d+(?:\.\d+)?)\s*%\s*\)")  # "step 00012 (4.0%)": the share of the budget done
# A summary key is a name (letters, digits, ``_ . -``), so prose with a colon in it is not read as a setting.
_SUMMARY_KV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*:\s*(.*?)\s*$")
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")
_LINE_END = re.compile(r"[\r\n]")
MAX_ERROR = 500  # characters of an error line kept as a row's reason


class Progress(NamedTuple):
    """One parsed progress line (the runner turns it into a ``CurvePoint``)."""

    step: int | None
    elapsed_s: float
    loss: float | None
    values: dict[str, float]


def split_lines(text: str) -> list[str]:
    """Lines as the protocol sees them: a ``\\r`` redraw ends a line as ``\\n`` does."""
    return _LINE_END.split(text)


def number(text: str) -> float | None:
    """``"1,200.5"`` -> 1200.5; None when ``text`` is not a number (``nan`` and ``inf`` are numbers)."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


PHASE_MARK = "[phase] "  # a line the harness prints as a run enters a phase of its own: "[phase] evaluate"
_PHASE = re.compile(r"^\[phase\] ([a-z_]{1,20})\s*$")


def phase_line(name: str) -> str:
    """The line a run prints as it enters phase ``name`` (the loop shows it, and times each phase)."""
    return PHASE_MARK + name


def parse_phase(line: str) -> str | None:
    """The phase a :func:`phase_line` names, or None for any other line.

    >>> parse_phase("[phase] evaluate"), parse_phase("step 3 | loss: 2.0")
    ('evaluate', None)
    """
    m = _PHASE.match(line.strip())
    return m.group(1) if m else None


def is_summary_start(line: str) -> bool:
    return line.strip() == SUMMARY_START


def is_fail(line: str) -> bool:
    """``FAIL`` on its own line, or a line starting with it (``FAIL: loss is nan``)."""
    return line.startswith(FAIL) or line.strip() == FAIL


def parse_progress(line: str, elapsed_s: float) -> Progress | None:
    """The step, loss and other numbers of a progress line; None when it carries neither step nor loss.

    ``elapsed_s`` is used when the line has no ``elapsed``/``time`` value of its own; ``ms`` values become
    seconds.

    >>> parse_progress("step 00012 (4.0%) | loss: 3.50 | tok/s: 1,200 | elapsed: 5.1s", 9.9).loss
    3.5
    """
    low = line.lower()
    if "step" not in low and "loss" not in low:  # most output lines: not progress, and cheap to rule out
        return None
    values: dict[str, float] = {}
    for key, num, unit in _KV.findall(line):
        value = number(num)
        if value is None:
            continue
        values[key.strip().lower().replace(" ", "_")] = value / 1000.0 if unit == "ms" else value
    step_match = _STEP.search(line)
    step = int(step_match.group(1)) if step_match else None
    if "step" in values:  # "step=5" is read by the key/value pattern, not by _STEP
        found = values.pop("step")
        if step is None and found == found and abs(found) != float("inf"):
            step = int(found)
    percent = _PERCENT.search(line)
    if percent and "progress" not in values:  # a fraction of the budget (0..1): where curves are compared
        values["progress"] = float(percent.group(1)) / 100.0
    loss = values.pop("loss") if "loss" in values else values.pop("train_loss", None)
    if step is None and loss is None:
        return None
    elapsed = values.pop("elapsed") if "elapsed" in values else values.pop("time", elapsed_s)
    return Progress(step, float(elapsed), loss, values)


def parse_summary(output: str | Iterable[str]) -> dict[str, Any]:
    """The ``key: value`` lines after the last ``---`` line; numbers become floats, other values stay text.

    ``output`` is a run's whole output or its lines. No ``---``: an empty summary.

    >>> parse_summary(["---", "a: 1", "---", "b: 2", "peak_vram_mb: 10"])
    {'b': 2.0, 'peak_vram_mb': 10.0, 'peak_memory_mb': 10.0}
    """
    lines = split_lines(output) if isinstance(output, str) else list(output)
    start = max((i for i, line in enumerate(lines) if is_summary_start(line)), default=None)
    summary: dict[str, Any] = {}
    if start is None:
        return summary
    for line in lines[start + 1:]:
        match = _SUMMARY_KV.match(line)
        if match:
            key, raw = match.groups()
            value = number(raw)
            summary[key] = raw if value is None else value
    for theirs, ours in KEY_ALIASES.items():
        if theirs in summary and ours not in summary:
            summary[ours] = summary[theirs]
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary block as a run prints it (``parse_summary`` reads it back)."""
    return "\n" + SUMMARY_START + "\n" + "".join(f"{key + ':':<18}{value}\n" for key, value in summary.items())


def last_error(lines: list[str]) -> str | None:
    """The line that says why a run failed: a traceback's last line, else the last error-looking or FAIL line."""
    # A Python traceback ends with the first unindented line after its header: that is the error.
    header = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
                 default=None)
    if header is not None:
        for line in lines[header + 1:]:
            if line.strip() and not line[0].isspace():
                return line.strip()[:MAX_ERROR]
    for line in reversed(lines):
        s = line.strip()
        if _ERROR_LINE.match(s) or s.startswith(FAIL):
            return s[:MAX_ERROR]
    return None
