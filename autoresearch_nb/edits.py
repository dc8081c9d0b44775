"""Applying an agent's edits to the editable file, and checking the result before anything runs."""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from .errors import AutoresearchError


@dataclass(frozen=True)
class Edit:
    """Replace exactly one occurrence of ``search`` with ``replace``."""

    search: str
    replace: str


class EditError(AutoresearchError, ValueError):
    """An edit does not apply; the message is meant to be shown to the agent for a repair."""


def apply_edits(source: str, edits: tuple[Edit, ...] | list[Edit]) -> str:
    """Apply search/replace edits in order. Each search text must occur exactly once.

    >>> apply_edits("LR = 0.1\\n", [Edit("LR = 0.1", "LR = 0.2")])
    'LR = 0.2\\n'
    """
    text = source
    for i, edit in enumerate(edits, 1):
        if not edit.search:
            raise EditError(f"edit {i}: the search text is empty")
        count = text.count(edit.search)
        if count == 0:
            raise EditError(f"edit {i}: the search text was not found in the file:\n{edit.search[:400]}")
        if count > 1:
            raise EditError(f"edit {i}: the search text occurs {count} times; include more context so it is unique")
        text = text.replace(edit.search, edit.replace, 1)
    return text


def check_python(path: str, text: str) -> None:
    """Raise :class:`EditError` when the text cannot be written as UTF-8, or a ``.py`` file no longer compiles."""
    bad = unencodable(text)
    if bad is not None:
        raise EditError(f"{path} would hold {bad}, which UTF-8 cannot encode; a source file must be valid UTF-8")
    if not path.endswith(".py"):
        return
    try:
        # Not named by its path: Python would quote the line from a file of that name in the current
        # directory (the user's checkout), not from the proposal.
        compile(text, f"<proposed {path}>", "exec", dont_inherit=True)
    except SyntaxError as e:
        lines = text.splitlines()
        line = lines[e.lineno - 1] if e.lineno and 0 < e.lineno <= len(lines) else ""
        raise EditError(f"{path} does not compile: {e.msg} (line {e.lineno}): {line.strip()[:200]}") from None
    except ValueError as e:  # e.g. null bytes
        raise EditError(f"{path} does not compile: {e}") from None


def unified_diff(old: str, new: str, path: str) -> str:
    """A git-style unified diff of one file."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def unencodable(text: str) -> str | None:
    """``None`` when ``text`` encodes as UTF-8; else where it does not, in ASCII (``the character \\ud800 on
    line 3``).

    JSON can spell a lone surrogate (``"\\ud800"``): Python holds it in a str, but no file, git blob or SQLite
    text can.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        return f"the character {text[e.start:e.end].encode('unicode_escape').decode('ascii')} on line {line}"
    return None


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode spelled as escapes (``\\ud800``), so it can always be stored.

    >>> printable("x \\ud800")
    'x \\\\ud800'
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def content_hash(text: str) -> str:
    """Identity of a file's content, blind to trailing whitespace on lines and at the end. Any str hashes, a
    lone surrogate included (it is refused as content by :func:`check_python`, but must not crash a lookup)."""
    norm = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest()[:16]
