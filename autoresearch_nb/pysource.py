"""``ast.parse`` that is safe across threads.

CPython 3.11 can raise ``SystemError: AST constructor recursion depth mismatch`` when two threads build AST
objects at once (python/cpython#106905): seen here as a proposal lost to "the agent raised SystemError" while the
lookahead thread's tuner parsed train.py beside the loop's own duplicate check. Every parse of the package goes
through one lock.
"""
from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source, filename)``, one thread at a time."""
    with _LOCK:
        return ast.parse(source, filename)


__all__ = ["parse"]
