"""Text from agents and runs, made safe to print: control characters shown, never sent.

A description an agent wrote, a run's error line or its reason can hold ANSI/OSC escape sequences
(``ESC ] 0 ; title BEL``, ``ESC [ 2 J``): printed raw they rewrite the user's terminal (clear it, retitle it,
move the cursor over earlier lines, or on some terminals write to the clipboard). Every place that writes such
text to a terminal or a text file (the console printer, ``autoresearch-nb results``, results.tsv, git commit
subjects) passes it through :func:`printable`.

    >>> printable("X to 2\\x1b]0;pwned\\x07\\x1b[2J")
    'X to 2\\\\x1b]0;pwned\\\\x07\\\\x1b[2J'
"""
from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (0x9b is a one-byte CSI, 0x9d a one-byte OSC).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with each control character (ESC, BEL, carriage return, C1...) written as a visible ``\\xNN``
    escape; tabs and newlines stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if text else text


__all__ = ["printable"]
