"""Our own tabular benchmark of real curves: train.py over a design around its defaults, every curve kept.

    python benchmarks/curve_table.py [--budget 30] [--max-minutes 60]     # resumable: run it again to go on
    python benchmarks/curve_table.py --report                              # what the table holds so far
    python benchmarks/curve_table.py --list                                # the design, without running

In the manner of LCBench or NAS-Bench-201: each row is one run of the repository's train.py (its CPU config, the
default stdlib corpus) with some constants changed, on the **cpu** budget clock (``--budget`` CPU seconds per
thread), then scored by the loop's own verifier (``python -m autoresearch_nb.verifier``: val_bpb and the holdout).
A row keeps the run's ``train_bpb`` (smoothed training loss in bits per byte) at every 5 % of progress, so
``benchmarks/search_replay.py`` can replay early stopping at equal progress, and the final numbers.

The design (:func:`design`), from the tuner's own view of train.py (``agents.space.discover``, so the structural
dials ``# choices:`` offers are in it): every one-dial move the tuner can make, numbers at 1/4, 1/2, 2 and 4 times
their default (log dials) or across their range, every alternative of a choice, Muon with its own learning rates;
then seeded random combinations of 2-3 dials. Two seeds each, five for the baseline; ``--extra-seeds`` adds seeds
to the best few later. Rows are appended to ``benchmarks/data/curve_table.csv`` as each run ends (a run that
crashed is a row too, with its status), so the table survives a stop and grows across sessions.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.prune import GRID as PRUNE_GRID  # noqa: E402  (light: records only)

OUT = ROOT / "benchmarks" / "data" / "curve_table.csv"
GRID = list(PRUNE_GRID)  # the stop rule's grid: the table and the replay read curves where it does
FIELDS = ["config", "changes", "seed", "status", "val_bpb", "holdout_bpb", "claimed_bpb", "num_steps",
          "training_seconds", "run_seconds", "wall_s", *[f"p{int(round(f * 100)):03d}" for f in GRID],
          "budget", "clock", "threads", "torch", "machine"]
COMBOS = 30          # random combinations of 2-3 one-dial moves
SEEDS, BASE_SEEDS = (1, 2), (1, 2, 3, 4, 5)


def moves() -> list[dict[str, str]]:
    """Every one-dial move around the default, as {NAME: source text}."""
    from autoresearch_nb.agents.space import discover

    source = (ROOT / "train.py").read_text()
    space = discover(source, "train.py")
    values = space.values(source)
    out: list[dict[str, str]] = []
    for name in space.names:
        p = space[name]
        if p.when is not None and not p.active(values):
            continue  # an inert dial (MUON_LR under adamw): its moves come with OPTIMIZER below
        now = values[name]
        if p.kind == "choice":
            options = [c for c in p.choices if c != p.text(now).strip() and c != repr(now) and c != str(now)]
            for c in options:
                change = {name: c}
                if name == "OPTIMIZER":  # Muon at its own learning rates too
                    muon = space["MUON_LR"]
                    out += [{name: c, "MUON_LR": muon.text(muon.value * f)} for f in (0.5, 2.0)]
                out.append(change)
        elif p.kind in ("int", "pow2"):
            lo, hi = int(p.low), int(p.high)
            current = now if p.kind == "int" else int(now).bit_length() - 1
            for k in range(lo, hi + 1):
                if k != current:
                    out.append({name: str(k if p.kind == "int" else 2 ** k)})
        else:
            cands = [now * f for f in (0.25, 0.5, 2.0, 4.0)] if p.log or now else \
                [p.low + (p.high - p.low) * f for f in (0.25, 0.5, 1.0)]
            for v in cands:
                if p.low - 1e-12 <= v <= p.high + 1e-12 and v != now:
                    out.append({name: p.text(v)})
    return out


def design() -> list[dict[str, str]]:
    """The baseline, every one-dial move, then seeded combinations (of moves on different dials)."""
    singles = moves()
    rng = random.Random(20261207)
    combos: list[dict[str, str]] = []
    seen = set()
    while len(combos) < COMBOS:
        k = rng.choice((2, 2, 3))
        picked = rng.sample(singles, k)
        merged: dict[str, str] = {}
        for m in picked:
            merged.update(m)
        if sum(len(m) for m in picked) != len(merged):
            continue  # two moves of one dial
        key = json.dumps(merged, sort_keys=True)
        if key not in seen:
            seen.add(key)
            combos.append(merged)
    return [{}, *singles, *combos]


def render(changes: dict[str, str]) -> str:
    from autoresearch_nb.agents.space import discover

    source = (ROOT / "train.py").read_text()
    if not changes:
        return source
    space = discover(source, "train.py")
    return space.render(source, {n: space[n].decode(space[n].encode(_literal(t))) if space[n].kind != "choice"
                                 else _literal(t) for n, t in changes.items()})


def _literal(text: str):
    import ast
    return ast.literal_eval(text)


def config_id(changes: dict[str, str]) -> str:
    return "baseline" if not changes else ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))


def one_run(changes: dict[str, str], seed: int, budget: float, threads: int) -> dict:
    """Train the changed train.py once on the cpu clock, then verify it as the loop does."""
    from autoresearch_nb.protocol import parse_summary
    from autoresearch_nb.prune import at_grid
    from autoresearch_nb.runner import Run, scrub_env

    with tempfile.TemporaryDirectory(prefix="curve-table-") as tmp:
        work, export = Path(tmp) / "work", Path(tmp) / "export"
        work.mkdir()
        (work / "train.py").write_text(render(changes))
        env = {**scrub_env(), "AUTORESEARCH_BUDGET_CLOCK": "cpu", "AUTORESEARCH_THREADS": str(threads),
               "AUTORESEARCH_SEED": str(seed), "AUTORESEARCH_TIME_BUDGET": f"{budget:g}",
               "AUTORESEARCH_DEVICE": "cpu", "AUTORESEARCH_EXPORT": str(export), "PYTHONPATH": str(ROOT),
               "PYTHONUNBUFFERED": "1"}
        started = time.time()
        result = Run("python train.py", work, Path(tmp) / "run.log", timeout_s=2 * budget + 60, env=env,
                     clock="cpu", threads=threads).wait()
        curve = at_grid(result.points)
        row = {"status": "ok", "claimed_bpb": result.summary.get("val_bpb"), "num_steps": result.summary.get("num_steps"),
               "training_seconds": result.summary.get("training_seconds"), "run_seconds": result.run_seconds,
               "wall_s": round(result.wall_s, 1),
               **{f"p{int(round(f * 100)):03d}": (None if v is None else round(v, 5)) for f, v in zip(GRID, curve)}}
        if result.exit_code != 0 or result.timed_out:
            row["status"] = "timeout" if result.timed_out else "crash"
            return row
        verify = subprocess.run([sys.executable, "-m", "autoresearch_nb.verifier", "--artifact-dir", str(export),
                                 "--budget", f"{budget:g}", "--clock", "cpu", "--not-before", f"{started - 1:.3f}"],
                                env=env, capture_output=True, text=True, timeout=900)
        summary = parse_summary(verify.stdout.splitlines()[verify.stdout.splitlines().index("---"):]
                                if "---" in verify.stdout.splitlines() else [])
        if verify.returncode != 0 or "val_bpb" not in summary:
            row["status"] = str(summary.get("verdict") or "unverified")
            return row
        row.update(val_bpb=summary["val_bpb"], holdout_bpb=summary.get("holdout_bpb"))
        return row


def load(path: Path = OUT) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def report(rows: list[dict]) -> None:
    import statistics
    if not rows:
        print("no rows yet")
        return
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    ok = [r for r in rows if r["status"] == "ok"]
    print(f"{len(rows)} runs of {len(by)} configurations ({len(ok)} verified) | budget {rows[0]['budget']} "
          f"CPU s/thread ({rows[0]['clock']} clock) | torch {rows[0]['torch']} | {rows[0]['machine']}")
    base = [float(r["val_bpb"]) for r in by.get("baseline", []) if r["status"] == "ok"]
    if len(base) > 1:
        print(f"baseline: {len(base)} seeds, val_bpb {statistics.mean(base):.4f} ± {statistics.stdev(base):.4f}")
    means = sorted((statistics.mean(float(r["val_bpb"]) for r in rs if r["status"] == "ok"), c)
                   for c, rs in by.items() if any(r["status"] == "ok" for r in rs))
    for value, c in means[:8]:
        print(f"  {value:.4f}  {c}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--limit", type=int, default=None, help="run only the first N configurations")
    parser.add_argument("--extra-seeds", type=int, default=0, help="seeds 3.. for the best few configurations")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for changes in design():
            print(config_id(changes))
        return
    rows = load(args.out)
    if args.report:
        report(rows)
        return
    import torch
    plan = [(c, s) for c in design()[:args.limit] for s in (BASE_SEEDS if not c else SEEDS)]
    if args.extra_seeds:
        import statistics
        by: dict[str, list[float]] = {}
        for r in rows:
            if r["status"] == "ok":
                by.setdefault(r["config"], []).append(float(r["val_bpb"]))
        best = sorted((statistics.mean(v), c) for c, v in by.items() if c != "baseline")[:args.extra_seeds]
        wanted = {c for _, c in best}
        plan += [(c, s) for c in design() if config_id(c) in wanted for s in (3, 4, 5)]
    done = {(r["config"], int(r["seed"])) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.is_file()
    started = time.monotonic()
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for changes, seed in plan:
            cid = config_id(changes)
            if (cid, seed) in done:
                continue
            if args.max_minutes and time.monotonic() - started > 60 * args.max_minutes:
                print("time's up: run again to go on", flush=True)
                break
            got = one_run(changes, seed, args.budget, args.threads)
            writer.writerow({"config": cid, "changes": json.dumps(changes, sort_keys=True), "seed": seed, **got,
                             "budget": args.budget, "clock": "cpu", "threads": args.threads,
                             "torch": torch.__version__, "machine": f"{platform.machine()} {os.cpu_count()} cpus"})
            f.flush()
            done.add((cid, seed))
            print(f"{cid} seed {seed}: {got['status']} val_bpb {got.get('val_bpb')} steps {got.get('num_steps')}",
                  flush=True)
    report(load(args.out))


if __name__ == "__main__":
    main()
