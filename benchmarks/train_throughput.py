"""train.py against a plain GPT of the same shape: tokens/s over process wall time, and val_bpb at equal time.

The reference (below, ``--reference``) is a textbook nanoGPT-style model: LayerNorm, learned positions, GELU, a
head tied to the embedding, AdamW, no clipping, eager, fp32. It reads its shape (depth, width, heads, vocab via the
tokenizer, sequence, batch) from train.py, trains on the same corpus with the same harness batches for the same
budget, and is scored by the same ``evaluate_bpb``. Each run is its own subprocess with the same environment
(thread count, ``OMP_WAIT_POLICY``); runs alternate train.py / reference so a busy neighbour hits both alike.

    python benchmarks/train_throughput.py                      # 3 pairs of 20 s runs
    python benchmarks/train_throughput.py --budget 60 --seeds 1 2 3 --threads 2

Prints one line per run, then the median over pairs of the ratio train.py / reference (each pair ran back to
back, in alternating order, so a busy neighbour hits both alike); > 1 means train.py is faster. tokens/s is the
training tokens over the whole process's wall time (imports, compile and evaluation count). The load average is
printed beside each run: on a shared machine the ratios are what counts, not the absolute figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_train(path: Path):
    """train.py as a module (its hyperparameters and ``model_dim``), without running ``main``."""
    spec = importlib.util.spec_from_file_location("train_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(script: Path) -> None:
    """Train the plain GPT with train.py's shape and budget; print the same text protocol."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from autoresearch_nb import harness as H

    T = load_train(script)
    device, seq_len = T.DEVICE, T.SEQ_LEN
    dim = T.model_dim(T.DEPTH, T.ASPECT_RATIO, T.HEAD_DIM) if hasattr(T, "model_dim") else T.DEPTH * T.ASPECT_RATIO
    n_heads = max(1, dim // T.HEAD_DIM)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

        def forward(self, x):
            B, L, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, n_heads, C // n_heads).transpose(1, 3).unbind(2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, L, C))
            return x + self.down(F.gelu(self.up(self.ln2(x))))

    class PlainGPT(nn.Module):
        def __init__(self, vocab_size):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab_size, dim), nn.Embedding(seq_len, dim)
            self.blocks = nn.ModuleList(Block() for _ in range(T.DEPTH))
            self.ln_f = nn.LayerNorm(dim)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02 / ((2 * T.DEPTH) ** 0.5 if name.endswith("proj.weight") else 1))

        def forward(self, idx, targets=None):
            x = self.wte(idx) + self.wpe.weight[: idx.size(1)]
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)
            if targets is None:
                return logits
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    torch.manual_seed(T.SEED)
    corpus = H.load_corpus()
    tokenizer = H.get_tokenizer(corpus, T.TOKENIZER)
    batches = H.Batches(corpus, tokenizer, T.BATCH_SIZE, seq_len, device, T.SEED)
    model = PlainGPT(tokenizer.vocab_size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    n = sum(p.numel() for name, p in model.named_parameters() if name not in ("wte.weight", "wpe.weight"))
    flops_per_token = 6 * (n + tokenizer.vocab_size * dim) + 12 * T.DEPTH * dim * seq_len
    tokens_per_step = T.BATCH_SIZE * seq_len * T.GRAD_ACCUM
    print(f"reference: plain GPT | device: {device} | params: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"
          f" | dim: {dim} | budget: {T.TIME_BUDGET:.0f}s", flush=True)
    step, elapsed, loss_value = 0, 0.0, float("nan")
    while elapsed < T.TIME_BUDGET:
        progress = elapsed / T.TIME_BUDGET  # same warm-up and linear warm-down shape as train.py's default
        lr = 3e-3 * min((progress + 1e-3) / 0.02, 1.0, (1 - progress) / 0.4 + 0.05)
        for g in optimizer.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        for _ in range(T.GRAD_ACCUM):
            x, y = next(batches)
            loss = model(x, y)
            (loss / T.GRAD_ACCUM).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        elapsed += time.perf_counter() - t0
        step += 1
        if H.diverged(loss_value):
            H.fail(f"loss is {loss_value} at step {step}")
    H.report(model, corpus, tokenizer, training_seconds=elapsed, num_steps=step, total_tokens=step * tokens_per_step,
             flops_per_token=flops_per_token, depth=T.DEPTH, device=device)


def run(args, which: str, seed: int | None) -> dict:
    from autoresearch_nb.harness import parse_summary

    cmd = [sys.executable, str(args.script)] if which == "train.py" else \
        [sys.executable, str(Path(__file__).resolve()), "--reference", "--script", str(args.script)]
    env = dict(os.environ, AUTORESEARCH_TIME_BUDGET=str(args.budget),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # train.py sets this default itself; the reference gets the same
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if seed is not None:
        env["AUTORESEARCH_SEED"] = str(seed)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=args.script.parent)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = parse_summary(result.stdout)
    if result.returncode != 0 or "val_bpb" not in summary:
        raise SystemExit(f"{which} failed:\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    summary["tok_s"] = summary["total_tokens_M"] * 1e6 / summary["total_seconds"]
    # CPU seconds of the whole process: on a machine shared with other jobs this is the steadier measure
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    summary["tok_cpu_s"] = summary["total_tokens_M"] * 1e6 / cpu
    print(f"{which:>9}: {summary['tok_s']:8,.0f} tok/s over {summary['total_seconds']:5.1f} s of process, "
          f"{summary['tok_cpu_s']:8,.0f} per CPU second | "
          f"val_bpb {summary['val_bpb']:.4f} | mfu {summary['mfu_percent']:.1f}% | "
          f"params {summary['num_params_M']}M | seed {int(summary['seed'])} | load {os.getloadavg()[0]:.1f}", flush=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="train.py/reference pairs, back to back")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both (default: torch's choice)")
    parser.add_argument("--seeds", type=int, nargs="*", help="AUTORESEARCH_SEED of each pair (overrides --rounds)")
    parser.add_argument("--script", type=Path, default=ROOT / "train.py")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.script = args.script.resolve()
    if args.reference:
        reference(args.script)
        return 0

    from autoresearch_nb import harness as H
    T = load_train(args.script)
    # Train the BPE and tokenize the train split once here, as the loop's setup does: the first timed run would
    # otherwise pay for the tokenization alone (about 6 s of a 25 s process here: seen as a 0.86x first pair)
    corpus = H.load_corpus()
    tokens = len(H.token_stream(corpus, H.get_tokenizer(corpus, T.TOKENIZER), "train"))
    print(f"tokenized the train split before any timed run: {tokens:,} tokens ({T.TOKENIZER})")
    seeds = args.seeds or [None] * args.rounds
    print(f"device: {T.DEVICE} | threads: {args.threads or 'default'} | "
          f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')} | budget: {args.budget:.0f}s | "
          f"script: {args.script}")
    pairs = []
    for i, seed in enumerate(seeds):  # the order alternates, so neither side always runs on a cold page cache
        first, second = ("train.py", "reference") if i % 2 == 0 else ("reference", "train.py")
        done = {first: run(args, first, seed)}
        done[second] = run(args, second, seed)
        pairs.append((done["train.py"], done["reference"]))
    print(f"ratio tokens/s (train.py / reference, median of {len(pairs)} pairs): "
          f"{median(a['tok_s'] / b['tok_s'] for a, b in pairs):.2f}x over process wall time, "
          f"{median(a['tok_cpu_s'] / b['tok_cpu_s'] for a, b in pairs):.2f}x per CPU second")
    bpb = [sum(pair[i]["val_bpb"] for pair in pairs) / len(pairs) for i in (0, 1)]
    print(f"val_bpb at {args.budget:.0f} s (mean of {len(pairs)}): train.py {bpb[0]:.4f} | "
          f"reference {bpb[1]:.4f} | ratio {bpb[0] / bpb[1]:.3f} (< 1: train.py better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
