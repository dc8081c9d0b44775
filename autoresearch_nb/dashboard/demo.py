"""A toy research target for trying the loop and the dashboard without a GPU (also used by the tests).

``make_demo_repo(path)`` writes a git repository with a ``train.py`` that follows the trainer's text protocol
(``\\r`` progress lines, then ``---`` and ``score: ...``), a few CAPS hyperparameters the tuner can move, and a
``queue.toml`` for the queue agent. A run takes the time budget (``AUTORESEARCH_TIME_BUDGET``) and nothing else.

>>> repo = make_demo_repo("/tmp/demo")                                           # doctest: +SKIP
>>> loop = Loop.open(repo, tag="try", agent="queue", metric="score", time_budget_s=5)  # doctest: +SKIP
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

TRAIN_PY = '''"""A toy trainer: loss decays over the time budget; the final score depends on the constants."""
import math
import os
import random
import time

# ---- hyperparameters ----
LR = 0.01
WIDTH = 64
WARMUP_RATIO = 0.1
EXTRA_SECONDS = 0.0  # fixed
SLEEP_S = 0.05  # fixed


def quality() -> float:
    """0 at the best settings (LR 0.003, WIDTH 128, WARMUP_RATIO 0.05), larger elsewhere."""
    return (abs(math.log10(LR) - math.log10(0.003)) + abs(math.log2(WIDTH) - 7) / 4
            + abs(WARMUP_RATIO - 0.05))


def main() -> None:
    budget = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "5"))
    random.seed(int(os.environ.get("AUTORESEARCH_SEED", "42")))
    floor = 1.0 + quality()
    t0 = time.time()
    step, loss = 0, floor + 3.0
    while time.time() - t0 < budget + EXTRA_SECONDS:
        step += 1
        elapsed = time.time() - t0
        loss = floor + 3.0 * math.exp(-3.0 * elapsed / budget) + random.gauss(0, 0.02)
        print(f"step {step:05d} | loss: {loss:.4f} | elapsed: {elapsed:.2f}s", end="\\r", flush=True)
        time.sleep(SLEEP_S)
    print()
    print("---")
    print(f"score: {floor + random.gauss(0, 0.001):.6f}")
    print(f"training_seconds: {time.time() - t0:.1f}")
    print(f"num_steps: {step}")


if __name__ == "__main__":
    main()
'''

QUEUE_TOML = '''[[experiment]]
description = "lower the learning rate to 0.003"
edits = [{ search = "LR = 0.01", replace = "LR = 0.003" }]

[[experiment]]
description = "halve the width"
edits = [{ search = "WIDTH = 64", replace = "WIDTH = 32" }]

[[experiment]]
description = "double the width"
edits = [{ search = "WIDTH = 64", replace = "WIDTH = 128" }]
'''

PROGRAM_MD = "# Program\n\nMake `score` (printed by train.py) as low as possible. Only edit the constants.\n"


def make_demo_repo(path: str | os.PathLike[str], queue: str | None = None, train: str | None = None) -> Path:
    """Create (or reuse) a toy target repository at ``path`` and return its path.

    ``queue`` replaces the default ``queue.toml``; ``train`` replaces ``train.py``. The files are committed,
    with a local identity so it works on a machine without a git config.
    """
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    files = {"train.py": train or TRAIN_PY, "queue.toml": queue if queue is not None else QUEUE_TOML,
             "program.md": PROGRAM_MD,
             "autoresearch.toml": 'metric = "score"\nrecord = ["num_steps"]\n',
             ".gitignore": ".autoresearch/\n.ipynb_checkpoints/\n*.out.ipynb\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True)

    if not (root / ".git").exists():
        git("init", "-q", "-b", "main")
        git("config", "user.name", "autoresearch demo")
        git("config", "user.email", "demo@example.invalid")
    git("add", *files)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, env=env, capture_output=True, text=True)
    if status.stdout.strip():
        git("commit", "-q", "-m", "demo target")
    return root
