"""A small research repo for the tests of adopt, gc, notify and the Optuna views: real git, the real CLI.

The target scores ``(X - 1) ** 2`` (plus ``extra`` lines), queue entries move ``X``; nothing here is a fake.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def target(*extra: str, x: str = "3.0") -> str:
    """A train.py: ``X``, any ``extra`` lines, a progress line and the summary ``score``."""
    return "\n".join([f"X = {x}", *extra, 'print("step 1 | loss: 0.5")', 'print("---")',
                      'print(f"score: {(X - 1) ** 2:.6f}")', ""])


def queue(*moves: tuple[str, str], description: str = "X to {x}") -> str:
    """A queue.toml moving X from ``a`` to ``x`` per ``(a, x)``, described as ``description``."""
    return "".join(f'[[experiment]]\ndescription = "{description.format(x=x)}"\n'
                   f'edits = [{{ search = "X = {a}", replace = "X = {x}" }}]\n' for a, x in moves)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repo at ``root`` with ``files`` committed on branch ``main`` by a configured user."""
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        git(root, *args)
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    return root


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess:
    """``autoresearch-nb args`` in a real process (this interpreter, the PYTHONPATH copy of the package)."""
    return subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)  # type: ignore[call-overload]


def run_queue(root: Path, tag: str = "a", *args: str, **kw: object) -> subprocess.CompletedProcess:
    """A quick queue run: 5 s budgets, no noise repeats, metric ``score``."""
    return cli("run", "--tag", tag, "--repo", str(root), "--agent", "queue", "--metric", "score",
               "--time-budget", "5", "--noise-repeats", "1", *args, **kw)
