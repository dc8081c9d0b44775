"""Does corpus preparation scale? A synthetic folder corpus, prepared end to end, with MB/s and peak memory.

Generates ``--size`` MB of text files (random words from a fixed vocabulary, Zipf-like frequencies), then times
each stage in this process: the folder -> train/val/holdout split files (two streaming passes), a BPE learnt on a
bounded sample, and the train split tokenized into shards by ``--workers`` processes. Peak RSS is the largest
resident set of this process and of any worker. Goal: peak RSS under 1 GB whatever the size.

    python benchmarks/prepare_scale.py                    # 1024 MB (about 2 GB of disk with the shards)
    python benchmarks/prepare_scale.py --size 64 --workers 2
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(folder: Path, size_mb: int, seed: int = 0) -> int:
    """Write about ``size_mb`` MB of documents (2-20 KB each), 1000 per sub-folder. Returns bytes written."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    vocab = [bytes(letters[rng.integers(0, 26, rng.integers(2, 10))]) for _ in range(20000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    words = np.array(vocab, dtype=object)
    written, i = 0, 0
    while written < size_mb * 2**20:
        n = int(rng.integers(300, 3000))
        text = b" ".join(words[rng.choice(len(vocab), n, p=weights)]) + b".\n"
        path = folder / f"part{i // 1000:04d}" / f"doc{i:07d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
        written, i = written + len(text), i + 1
    return written


def peak_rss_mb() -> tuple[float, float]:
    """(this process, the largest child) peak resident set, MB (Linux reports KB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="corpus MB to generate (default 1024)")
    parser.add_argument("--workers", type=int, help="tokenizer processes (default: all cores)")
    parser.add_argument("--tokenizer", default="bpe-2048")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()

    from autoresearch_nb.harness.corpus import prepare_folder
    from autoresearch_nb.harness.shards import tokenize_split
    from autoresearch_nb.harness.tokenizer import get_tokenizer

    work = args.keep or Path(tempfile.mkdtemp(prefix="prepare_scale_"))
    try:
        t = time.perf_counter()
        size = generate(work / "src", args.size)
        print(f"generated {size / 2**20:.0f} MB in {time.perf_counter() - t:.1f} s", flush=True)
        stages = []
        t = time.perf_counter()
        corpus = prepare_folder(work / "src", work / "corpus")
        stages.append(("split", size, time.perf_counter() - t))
        t = time.perf_counter()
        tokenizer = get_tokenizer(corpus, args.tokenizer)
        stages.append((f"{args.tokenizer} (bounded sample)", corpus.meta["train_bytes"], time.perf_counter() - t))
        t = time.perf_counter()
        shards = tokenize_split(corpus, tokenizer, "train", workers=args.workers)
        stages.append(("tokenize train", corpus.meta["train_bytes"], time.perf_counter() - t))
        for name, nbytes, seconds in stages:
            print(f"{name:>28}: {nbytes / 2**20 / seconds:7.1f} MB/s ({seconds:.1f} s)")
        own, child = peak_rss_mb()
        print(f"train tokens: {len(shards):,} in {len(shards.arrays)} shards | "
              f"peak RSS: {own:.0f} MB (this process), {child:.0f} MB (largest worker) | "
              f"goal < 1024 MB: {'met' if max(own, child) < 1024 else 'NOT met'}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
