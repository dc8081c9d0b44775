"""What the verifier's causality probe costs: scoring the exported model with and without it, side by side.

    python benchmarks/causal_cost.py [--budget 30] [--rounds 3]

Trains the repository's train.py (its CPU config, the default stdlib corpus or ``AUTORESEARCH_DATA``) for
``--budget`` seconds with ``H.export``, loads the exported model as the verifier does (``torch.export.load``,
``program.module()``, padded to the export batch), then scores val and the holdout ``--rounds`` times each way,
alternating: plain ``evaluate_bpb``, and with the probe (:class:`autoresearch_nb.causal.Probe`, the verifier's
way). Prints the seconds of each, their ratio (median over rounds), the rows and positions checked, the largest
change seen at a checked position (0 for a causal model in float32), and that both ways give the same number.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train(budget: float, folder: Path) -> None:
    env = dict(os.environ, AUTORESEARCH_EXPORT=str(folder), AUTORESEARCH_TIME_BUDGET=f"{budget:g}",
               AUTORESEARCH_DEVICE="cpu", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "train.py")], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import json

    import torch

    from autoresearch_nb import harness as H
    from autoresearch_nb.causal import Probe
    from autoresearch_nb.harness.export import EXPORT_BATCH
    from autoresearch_nb.verifier import Padded, holdout_eval_bytes

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train(args.budget, folder)
        facts = json.loads((folder / "facts.json").read_text())
        program = torch.export.load(str(folder / "model.pt2"))
        module = program.module()
        model = Padded(module, EXPORT_BATCH)
        corpus = H.load_corpus(auto_prepare=False)
        tokenizer = H.get_tokenizer(corpus, facts["tokenizer"])
        device = torch.device("cpu")
        splits = {"val": H.eval_bytes(corpus, device), "holdout": holdout_eval_bytes(corpus, device)}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}, "
              f"tokenizer {facts['tokenizer']}, seq_len {facts['seq_len']}, trained {args.budget:g} s")
        for name, data in splits.items():
            plain_s, probe_s, numbers = [], [], set()
            probe = None
            for _ in range(args.rounds):
                for checked in (False, True):
                    probe = Probe(model, state=module) if checked else None
                    started = time.perf_counter()
                    bpb = H.evaluate_bpb(model, tokenizer=tokenizer, data=data, seq_len=facts["seq_len"],
                                         batch_size=EXPORT_BATCH, device=device, check=probe)
                    (probe_s if checked else plain_s).append(time.perf_counter() - started)
                    numbers.add(round(bpb, 9))
            assert probe is not None
            ratio = statistics.median(p / q for p, q in zip(probe_s, plain_s))
            print(f"{name:8s} {len(data):>7,} bytes  plain {statistics.median(plain_s):6.2f} s  "
                  f"with probe {statistics.median(probe_s):6.2f} s  ratio {ratio:.2f}x  rows {probe.rows}  "
                  f"positions {probe.positions:,}  worst {probe.worst:.3g} nats  "
                  f"same number: {len(numbers) == 1}")
        print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
