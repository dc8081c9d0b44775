"""Duty cycle with and without ``lookahead``: the device's busy seconds over the wall seconds of ``optimize``.

    python benchmarks/duty_cycle.py                          # 10 s runs / 2 s proposals, 5 s / 2 s (~5 min)
    python benchmarks/duty_cycle.py --cases 10/2 --experiments 8
    python benchmarks/duty_cycle.py --cases 1/0.4 --experiments 3 --no-tuner   # a toy scale (the test)

The experiment is sleep-bound: a train.py that sleeps ``run`` seconds and prints a score computed from ten
constants on ten lines. The Claude agent is the real code path (the Anthropic SDK, the prompt, the tool call,
the edit repair rules) against the local Messages API server of the tests (tests/fake_anthropic.py), which
waits ``proposal`` seconds and then answers with one edit: a seeded random constant moved a seeded random step,
read from the file the prompt shows (so about 10 % of consecutive proposals touch the same line, and a kept one
makes the prepared one conflict). The tuner runs as it is (milliseconds a proposal). Both use the same seeds
with lookahead 0 and 1 (and the tuner with auto), in one ``optimize`` call of a fresh run: the baseline, then
``--experiments`` experiments (with lookahead the first proposal is prepared during the baseline; a resumed
session's first proposal has nothing to overlap).

Printed per case: the duty cycle (busy / wall, from the run state the loop keeps), the wall seconds, the mean
proposal seconds, how many proposals were prepared during a run, and the re-apply conflict rate. The goal:
>= 97 % with lookahead 1 when a proposal is shorter than a run and the prepared change does not conflict.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from autoresearch_nb import Loop  # noqa: E402
from autoresearch_nb.results import run_stats  # noqa: E402
from fake_anthropic import FakeAnthropic, tool_use  # noqa: E402

TARGETS = [0.5, 2.0, -1.0, 3.0, 0.0, 1.5, -2.0, 2.5, -0.5, 1.0]


def target(run_s: float) -> str:
    constants = "\n".join(f"C{i} = 0.0" for i in range(len(TARGETS)))
    return (f"import time\n\n# Hyperparameters\n{constants}\nRUN_SECONDS = {run_s}\n\n"
            "time.sleep(RUN_SECONDS)\n"
            f"TARGETS = {TARGETS}\n"
            "score = sum((globals()[f'C{i}'] - t) ** 2 for i, t in enumerate(TARGETS))\n"
            "print('---')\nprint(f'score: {score:.6f}')\n")


def make_repo(root: Path, run_s: float) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(target(run_s))
    (root / "program.md").write_text("Make the score small by moving the constants C0..C9.\n")
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "b@example.com"],
                 ["config", "user.name", "b"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def fake_claude(delay_s: float, seed: int):
    """A script entry: after ``delay_s``, move one constant of the file shown in the prompt by a random step."""
    rng = random.Random(seed)
    line = re.compile(r"^C(\d) = (-?[\d.]+)$", re.M)
    files: set[tuple] = set()  # the files it proposed: like a real agent, it does not propose one twice

    def answer(request: dict) -> dict:
        time.sleep(delay_s)
        shown = json.dumps(request["messages"][-1]["content"])
        values = {int(i): v for i, v in line.findall(shown.replace("\\n", "\n"))}
        files.add(tuple(sorted(values.items())))
        while True:
            i = rng.randrange(len(TARGETS))
            old = values.get(i, "0.0")
            new = round(float(old) + rng.choice([-1.0, -0.5, 0.5, 1.0]), 2)
            made = tuple(sorted({**values, i: str(new)}.items()))
            if made not in files:
                files.add(made)
                break
        return tool_use({"description": f"C{i} to {new}",
                         "edits": [{"search": f"C{i} = {old}", "replace": f"C{i} = {new}"}]})
    return answer


def measure(agent: str, lookahead: str, run_s: float, proposal_s: float, n: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "r", run_s)
        with Loop.open(repo, tag="d", agent=agent, metric="score", time_budget_s=max(run_s, 1.0),
                       timeout_s=run_s + 60, noise_repeats=1, seed=seed, lookahead=lookahead,
                       max_repairs=0) as loop:
            loop.optimize(n=n + 1)  # the baseline first, as a fresh run does: the first proposal overlaps it
            exps = loop.experiments
            stats = run_stats(exps, loop.store.get_run("d")["state"])
        asked = [e.propose_seconds for e in exps if e.propose_seconds is not None]
        stats["propose_s"] = statistics.mean(asked) if asked else 0.0
        stats["ran"] = sum(e.status.ran for e in exps) - 1
        return stats


def line(label: str, s: dict) -> str:
    rate = "-" if s["conflict_rate"] is None else f"{100 * s['conflict_rate']:.0f}% ({s['conflicts']}/{s['reapplied']})"
    return (f"  {label:<22} duty {100 * s['duty_cycle']:5.1f}%   "
            f"wall {s['wall_s']:6.1f} s  busy {s['busy_s']:6.1f} s  ran {s['ran']:2d}  "
            f"proposal {s['propose_s']:5.2f} s  prepared {s['prepared']:2d}  conflicts {rate}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["10/2", "5/2"], help="run seconds / proposal seconds")
    p.add_argument("--experiments", type=int, default=6, help="experiments per measured optimize call")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-tuner", action="store_true", help="only the Claude agent")
    args = p.parse_args()
    # split, so no key scanner takes it for a real key
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-" + "fake-key-for-the-local-test-server-only"
    print(f"duty cycle = device-busy seconds / wall seconds of a fresh run's optimize(n=1 + {args.experiments}); "
          f"machine: {os.cpu_count()} CPUs")
    for case in args.cases:
        run_s, proposal_s = (float(x) for x in case.split("/"))
        print(f"\nruns of {run_s:g} s, Claude proposals of {proposal_s:g} s (local Messages API server):")
        for lookahead in ("0", "1"):
            with FakeAnthropic([fake_claude(proposal_s, args.seed)] * (4 * args.experiments + 8)) as api:
                os.environ["ANTHROPIC_BASE_URL"] = api.url
                stats = measure("claude", lookahead, run_s, proposal_s, args.experiments, args.seed)
            print(line(f"claude, lookahead {lookahead}", stats), flush=True)
        if not args.no_tuner:
            for lookahead in ("0", "1", "auto"):
                stats = measure("tuner", lookahead, run_s, 0.0, args.experiments, args.seed)
                print(line(f"tuner, lookahead {lookahead}", stats), flush=True)


if __name__ == "__main__":
    main()
