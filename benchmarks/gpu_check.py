"""The GPU check: everything a GPU machine must show, in one go, offline, printing one JSON line per stage.

Stages: ``env`` (torch, device, sandbox mode), ``prepare`` (a corpus from local files, the tokenizer train.py
picks, the train split tokenized into shards), ``train`` (train.py for ``--budget`` seconds: tokens/s, MFU, peak
memory, val_bpb), ``loop`` (a 3-experiment tuner loop through ``python -m autoresearch_nb.cli run``). Each line is
printed as soon as its stage ends, so a run cut short still reports what it did. Exit code 0 when every stage ran.

    python benchmarks/gpu_check.py                        # on the GPU machine: stdlib corpus, 60 s budgets
    python benchmarks/gpu_check.py --data ~/texts         # a folder of text/parquet files instead
    python benchmarks/gpu_check.py --dry                  # on a CPU: this package's sources, 2 s budgets

Needs no network: ``pip install --no-deps`` of this package on an image with torch >= 2.4, plus the wheels of its
other requirements carried in, is enough.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def emit(stage: str, **fields) -> dict:
    line = {"stage": stage, **fields}
    print(json.dumps(line), flush=True)
    return line


def sandbox_mode() -> str:
    """The loop's sandbox setting when this build has one, else ``none``."""
    from dataclasses import fields

    from autoresearch_nb.config import Config
    return str(next((f.default for f in fields(Config) if f.name == "sandbox"), "none"))


def child_env(args, corpus_path: Path, cache: Path) -> dict:
    env = dict(os.environ, AUTORESEARCH_DATA=str(corpus_path), AUTORESEARCH_CACHE=str(cache),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.dry:
        env.update(AUTORESEARCH_DEVICE="cpu")
    return env


def stage_prepare(args, work: Path):
    from autoresearch_nb.harness.corpus import prepare_folder, prepare_stdlib
    from autoresearch_nb.harness.prepare import tokenizer_of
    from autoresearch_nb.harness.shards import tokenize_split
    from autoresearch_nb.harness.tokenizer import get_tokenizer

    t = time.perf_counter()
    source = args.data or (ROOT / "autoresearch_nb" if args.dry else None)
    corpus = prepare_folder(source, work / "corpus") if source else prepare_stdlib(work / "corpus")
    name = tokenizer_of(str(args.script))
    tokenizer = get_tokenizer(corpus, name)
    shards = tokenize_split(corpus, tokenizer, "train")
    seconds = time.perf_counter() - t
    emit("prepare", corpus=corpus.fingerprint, source=str(source or "stdlib"), tokenizer=name,
         train_mb=round(corpus.meta["train_bytes"] / 2**20, 2), train_tokens=len(shards),
         shards=len(shards.arrays), seconds=round(seconds, 1),
         mb_per_s=round(corpus.meta["train_bytes"] / 2**20 / seconds, 1))
    return corpus


def stage_train(args, env: dict, work: Path) -> bool:
    from autoresearch_nb.harness import parse_summary

    t = time.perf_counter()
    result = subprocess.run([sys.executable, str(args.script)], cwd=work, capture_output=True, text=True,
                            env=dict(env, AUTORESEARCH_TIME_BUDGET=str(args.budget)), timeout=args.budget * 4 + 300)
    s = parse_summary(result.stdout)
    if result.returncode != 0 or "val_bpb" not in s:
        emit("train", ok=False, returncode=result.returncode, tail=(result.stdout + result.stderr)[-800:])
        return False
    first = result.stdout.splitlines()[0] if result.stdout else ""
    emit("train", ok=True, header=first, val_bpb=s["val_bpb"],
         tokens_per_s=round(s["total_tokens_M"] * 1e6 / max(s["training_seconds"], 1e-9)),
         mfu_percent=s["mfu_percent"], peak_memory_mb=s["peak_memory_mb"], num_steps=s["num_steps"],
         training_seconds=s["training_seconds"], total_seconds=s["total_seconds"], eval_bytes=s.get("eval_bytes"),
         device=s.get("device"), wall_s=round(time.perf_counter() - t, 1))
    return True


def stage_loop(args, env: dict, work: Path) -> bool:
    repo = work / "repo"
    repo.mkdir()
    shutil.copy(args.script, repo / "train.py")
    shutil.copy(ROOT / "program.md", repo / "program.md")
    for cmd in (["init", "-q"], ["add", "train.py", "program.md"],
                ["-c", "user.name=gpu-check", "-c", "user.email=gpu-check@localhost", "commit", "-qm", "baseline"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    t = time.perf_counter()
    # --dry rehearses the stages on a CPU: one baseline run, not the noise floor's three
    repeats = ["--noise-repeats", "1"] if args.dry else []
    result = subprocess.run(
        [sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "gpu-check", "--repo", str(repo),
         "--agent", "tuner", "--max-experiments", str(args.experiments), "--time-budget-s", str(args.budget),
         *repeats],
        cwd=repo, capture_output=True, text=True, env=env, timeout=args.experiments * (args.budget * 4 + 300))
    rows = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "results", "--tag", "gpu-check", "--repo",
                           str(repo), "--format", "json"], cwd=repo, capture_output=True, text=True, env=env)
    try:
        data = json.loads(rows.stdout)
    except ValueError:
        data = []
    records = data if isinstance(data, list) else data.get("experiments", data.get("rows", []))
    statuses = [str(r.get("status")) for r in records if isinstance(r, dict)]
    metrics = [r.get("val_bpb", r.get("metric")) for r in records if isinstance(r, dict)]
    ok = result.returncode == 0 and len(statuses) >= args.experiments
    emit("loop", ok=ok, returncode=result.returncode, experiments=len(statuses), statuses=statuses,
         val_bpb=metrics, wall_s=round(time.perf_counter() - t, 1),
         tail=None if ok else (result.stdout + result.stderr)[-800:])
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a local folder of text/parquet files (default: stdlib)")
    parser.add_argument("--budget", type=float, help="training seconds per run (default 60; --dry: 2)")
    parser.add_argument("--experiments", type=int, default=3, help="loop experiments, baseline included")
    parser.add_argument("--script", type=Path, default=ROOT / "train.py")
    parser.add_argument("--dry", action="store_true", help="on the CPU, tiny budgets and corpus (for tests)")
    parser.add_argument("--work", type=Path, help="work folder to keep (default: a temp folder)")
    args = parser.parse_args(argv)
    args.budget = args.budget or (2.0 if args.dry else 60.0)
    args.script = args.script.resolve()

    import torch
    cuda = torch.cuda.is_available() and not args.dry
    emit("env", torch=torch.__version__, python=sys.version.split()[0], cuda=cuda,
         device=torch.cuda.get_device_name(0) if cuda else "cpu", dry=args.dry, sandbox=sandbox_mode(),
         budget_s=args.budget)
    if not cuda and not args.dry:
        emit("done", ok=False, reason="no CUDA device; use --dry to run the check on a CPU")
        return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus = stage_prepare(args, work)
        env = child_env(args, corpus.path, work / "cache")
        ok = stage_train(args, env, work) and stage_loop(args, env, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    emit("done", ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
