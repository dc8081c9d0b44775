"""What a Python file *runs*, as a hash: two files with the same effective hash behave the same on a device class.

Comments, blank lines and formatting never reach the interpreter, and in a module-level assignment such as
``DEPTH = 8 if CUDA else 4`` a CPU run reads only the ``else`` side (a GPU run only the other). The effective
hash is the hash of the file's syntax tree with those conditionals resolved for the device class the runs
get, so the loop can tell (stdlib only, no torch):

- a proposal that changes nothing the runs read (a comment, the CUDA side on a CPU) is ``invalid``, and
- one whose effective file equals an experiment already run is ``skipped`` without running.

>>> effective_hash("A = 8 if CUDA else 4  # width\\n", "cpu") == effective_hash("A = 9 if CUDA else 4\\n", "cpu")
True
>>> effective_hash("A = 8 if CUDA else 4\\n", "cuda") == effective_hash("A = 9 if CUDA else 4\\n", "cuda")
False
"""
from __future__ import annotations

import ast
import hashlib

from .pysource import parse

DEVICE_FLAG = "CUDA"  # train.py's convention: CUDA = DEVICE_CLASS == "cuda" (the tuner's space reads it too)


def _flag(test: ast.expr) -> bool | None:
    """True for ``CUDA``, False for ``not CUDA``, None for any other test."""
    if isinstance(test, ast.Name) and test.id == DEVICE_FLAG:
        return True
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Name) \
            and test.operand.id == DEVICE_FLAG:
        return False
    return None


def effective_hash(source: str | None, device_class: str) -> str | None:
    """The hash of what ``source`` runs on ``device_class`` (``cpu``, ``cuda``, ``mps``); None when it does
    not parse (or is None): such a file is judged by its text alone."""
    if source is None:
        return None
    try:
        tree = parse(source)
    except (SyntaxError, ValueError):
        return None
    cuda = device_class == "cuda"
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.IfExp):
            flag = _flag(node.value.test)
            if flag is not None:
                node.value = node.value.body if flag == cuda else node.value.orelse
    dump = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return hashlib.sha1(dump.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["DEVICE_FLAG", "effective_hash"]
