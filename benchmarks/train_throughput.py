"""How fast does train.py train on this machine, against what the chip can do?

Measures the matmul peak (fp32 and bf16, the F.linear path nn.Linear takes), then runs train.py at its default
config for a short budget and prints its tokens/s and MFU beside the peaks.

    python benchmarks/train_throughput.py               # 30 s of training
    python benchmarks/train_throughput.py --budget 60
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.harness import device, fast_bf16, parse_summary  # noqa: E402
from autoresearch_nb.harness.runtime import measure_matmul_flops  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=30.0, help="training seconds for train.py")
    parser.add_argument("--script", type=Path, default=ROOT / "train.py")
    args = parser.parse_args()

    dev = device()
    fp32 = measure_matmul_flops(dev, torch.float32, seconds=2.0)
    bf16 = measure_matmul_flops(dev, torch.bfloat16, seconds=2.0)
    print(f"device: {dev} | threads: {torch.get_num_threads()} | bf16 autocast used by train.py: {fast_bf16(dev)}")
    print(f"matmul peak fp32: {fp32 / 1e9:9.1f} GFLOP/s")
    print(f"matmul peak bf16: {bf16 / 1e9:9.1f} GFLOP/s")

    peak = bf16 if fast_bf16(dev) else fp32
    env = dict(os.environ, AUTORESEARCH_TIME_BUDGET=str(args.budget), AUTORESEARCH_PEAK_FLOPS=str(peak),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, str(args.script)], env=env, capture_output=True, text=True,
                            cwd=args.script.parent)
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
        return 1
    summary = parse_summary(result.stdout)
    rates = [float(x.replace(",", "")) for x in re.findall(r"tok/s: ([\d,]+)", result.stdout)]
    steady = sorted(rates[len(rates) // 4:])  # skip the first quarter, report the median
    tok_s = steady[len(steady) // 2] if steady else float("nan")
    avg = summary["total_tokens_M"] * 1e6 / summary["training_seconds"]
    print(f"train.py tokens/s: {tok_s:9,.0f} (median step) | {avg:,.0f} (average over the budget)")
    print(f"train.py MFU:      {summary['mfu_percent']:9.1f}% of the {'bf16' if fast_bf16(dev) else 'fp32'} peak "
          f"| params {summary['num_params_M']}M | tokenizer {summary.get('tokenizer')} | val_bpb {summary['val_bpb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
