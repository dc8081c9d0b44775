"""What the loop's model verifier adds to an experiment: its seconds beside the experiment's, cold and warm.

    python benchmarks/verify_cost.py [--budget 120] [--rounds 1] [--sandbox auto]

Runs the repository's own train.py (its CPU config, the default stdlib corpus or ``AUTORESEARCH_DATA``) through
the loop's runner (:func:`autoresearch_nb.trial.execute`) with ``verify = "model"``, alternating two ways of
starting the verifier, side by side on the same machine state:

* ``cold``: a fresh verifier started after the run (what the loop did before: import torch, load, evaluate);
* ``warm``: the loop's way now (:meth:`Verification.begin`): the verifier process starts with the run, imports
  torch and the export loader and reads the corpus while the run trains, and waits; after the run it only loads
  the artifact and evaluates it.

For each run it prints the experiment's seconds (the run's wall time), the verifier's seconds (what the loop
waits for after the run: :func:`execute`'s verify step, counted as busy in the duty cycle), their ratio, the
verifier's own load+evaluate seconds, the run's own seconds besides training (its startup, export and final
evaluation of the same bytes), and the printed and verified val_bpb (equal: the same model, the same bytes). Goal: verifier <= 5 % of the experiment at the 120 s CPU budget. The load average is printed before
and after, since a shared machine's load moves both columns.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.pipeline import StopSignal, execute  # noqa: E402
from autoresearch_nb.verify import ENV_EXPORT, MODEL, Verification, confined  # noqa: E402


class Timed:
    """A verification step that records how long the loop waited for it."""

    def __init__(self, pending) -> None:
        self.pending, self.seconds = pending, None

    def __call__(self, result):
        started = time.perf_counter()
        try:
            return self.pending(result)
        finally:
            self.seconds = time.perf_counter() - started

    def close(self) -> None:
        self.pending.close()


def one(mode: str, budget: float, work: Path, sandbox: str) -> dict:
    run_dir = work / f"run-{mode}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copy(ROOT / "train.py", run_dir / "train.py")
    export = work / "artifacts" / mode
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_") or k in
           ("AUTORESEARCH_DATA", "AUTORESEARCH_DATASET", "AUTORESEARCH_CACHE")}
    env.update(AUTORESEARCH_TIME_BUDGET=f"{budget:g}", AUTORESEARCH_SEED="42", AUTORESEARCH_DEVICE="cpu",
               PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
               **{ENV_EXPORT: str(export)})
    check = Verification(metric="val_bpb", command=MODEL, budget_s=budget, keep_artifacts=5)
    log = work / f"{mode}.log"
    started = time.time()
    if mode == "warm":
        timed = Timed(check.begin(run_dir, env, log, confine=confined(sandbox, env=env)))
    else:  # started after the run, as before
        timed = Timed(_Cold(check, run_dir, env, log, sandbox, started))
    result = execute("python train.py", run_dir, log, env=env, timeout_s=budget * 3 + 300, stop=StopSignal(),
                     verify=timed)
    summary = (log.with_suffix(".verify.log").read_text() if log.with_suffix(".verify.log").exists() else "")
    inner = next((float(line.split(":")[1]) for line in summary.splitlines() if line.startswith("verify_seconds")),
                 None)
    total, training = result.summary.get("total_seconds"), result.summary.get("training_seconds")
    own = total - training if isinstance(total, (int, float)) and isinstance(training, (int, float)) else None
    return {"mode": mode, "experiment_s": result.wall_s, "verifier_s": timed.seconds, "inner_s": inner, "own_s": own,
            "printed": result.claimed, "verified": result.summary.get("val_bpb") if result.verified else None,
            "flag": result.flag.value if result.flag else "", "reason": result.flag_reason[:200]}


class _Cold:
    """A verifier begun only when the run has ended (the loop's old way)."""

    def __init__(self, check, run_dir, env, log, sandbox, started) -> None:
        self.args = (check, run_dir, env, log, sandbox, started)
        self.pending = None

    def __call__(self, result):
        check, run_dir, env, log, sandbox, started = self.args
        self.pending = check.begin(run_dir, env, log, confine=confined(sandbox, env=env), not_before=started)
        return self.pending(result)

    def close(self) -> None:
        if self.pending is not None:
            self.pending.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per experiment")
    parser.add_argument("--rounds", type=int, default=1, help="cold/warm pairs")
    parser.add_argument("--sandbox", default="auto", help="the verifier's sandbox mode (auto, landlock, none)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs, "
          f"budget {args.budget:g} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="verify-cost-") as tmp:
        for _ in range(args.rounds):
            for mode in ("cold", "warm"):
                rows.append(one(mode, args.budget, Path(tmp), args.sandbox))
                r = rows[-1]
                print(f"{r['mode']:<5} experiment {r['experiment_s']:7.1f} s  verifier {r['verifier_s']:6.2f} s "
                      f"= {100 * r['verifier_s'] / r['experiment_s']:5.1f}%  (load+eval {r['inner_s']} s; the run's "
                      f"own startup+export+eval {r['own_s'] if r['own_s'] is None else round(r['own_s'], 1)} s)  "
                      f"val_bpb printed {r['printed']} verified {r['verified']} {r['flag']} {r['reason']}",
                      flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for mode in ("cold", "warm"):
        share = [r["verifier_s"] / r["experiment_s"] for r in rows if r["mode"] == mode]
        print(f"{mode}: verifier / experiment = {100 * statistics.median(share):.1f}% (median of {len(share)})")


if __name__ == "__main__":
    main()
