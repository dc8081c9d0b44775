"""Fixed numbers of the harness. Changing any of these changes what val_bpb means, so the agent never edits them.

Per device class (``cpu``, ``mps``, ``cuda``) so that a 2-core laptop and an H100 both get a meaningful run:
comparisons are only ever made between runs on the same machine and corpus.
"""
from __future__ import annotations

# Environment variables: the loop passes the first two; the rest are for people and tests.
ENV_TIME_BUDGET = "AUTORESEARCH_TIME_BUDGET"   # training seconds (float)
ENV_SEED = "AUTORESEARCH_SEED"                 # int
ENV_DATA = "AUTORESEARCH_DATA"                 # a prepared dataset folder
ENV_DATASET = "AUTORESEARCH_DATASET"           # a dataset name under the cache (default: stdlib)
ENV_CACHE = "AUTORESEARCH_CACHE"               # cache root (default: ~/.cache/autoresearch_nb)
ENV_DEVICE = "AUTORESEARCH_DEVICE"             # force a torch device ("cpu", "cuda:1", ...)
ENV_DEVICE_CLASS = "AUTORESEARCH_DEVICE_CLASS" # force the config branch ("cuda" on a CPU, for tests)
ENV_PEAK_FLOPS = "AUTORESEARCH_PEAK_FLOPS"     # FLOP/s used for MFU when the table does not know the chip
ENV_BUDGET_CLOCK = "AUTORESEARCH_BUDGET_CLOCK" # "wall" or "cpu": what a second of the budget is (H.now)
ENV_THREADS = "AUTORESEARCH_THREADS"           # threads the run was given: the cpu clock divides by it
ENV_WORK_RATE = "AUTORESEARCH_WORK_RATE"       # FLOPs one budget second buys on the flops clock

DEFAULT_SEED = 42
DEFAULT_DATASET = "stdlib"
# On CUDA the stdlib corpus (about 3 M tokens) is seen about 40 times in a 5-minute H100 budget: a prepared one
# of these (in this order) is used instead when no dataset is named.
CUDA_PREFERRED = ("climbmix", "tinystories")
DEVICE_CLASSES = ("cpu", "mps", "cuda")

# The budget clock by device class when run by hand (the loop passes its own, autoresearch_nb.clock): CPU seconds
# per thread on a CPU, so a busy machine does not shorten training; wall time on accelerators.
BUDGET_CLOCK = {"cpu": "cpu", "mps": "wall", "cuda": "wall"}

# The flops clock (a work budget): one budget second is this many model FLOPs (train.py reports each step's
# work with H.work). CPU: the default train.py's rate on a 2-core x86 machine (about 120 steps in 30 s, as the
# cpu clock gives there); accelerators: about 40 % of the chip's dense bf16 peak.
WORK_RATE = {"cpu": 6.0e10, "mps": 4.0e12, "cuda": 4.0e14}

# Training seconds when run by hand (the loop always passes its own budget).
TIME_BUDGET = {"cpu": 120.0, "mps": 300.0, "cuda": 300.0}

# Context length the model must accept; evaluation runs on rows of exactly this many tokens.
SEQ_LEN = {"cpu": 128, "mps": 512, "cuda": 1024}

# Validation bytes scored by evaluate_bpb: EVAL_CHUNKS evenly spaced slices of the validation split, so the
# score covers many files yet costs only a few seconds on each class.
# CUDA scores 16 MB (about 4 M tokens of bpe-8192, a few seconds on an H100; was 1 MB); every row records it.
EVAL_BYTES = {"cpu": 2**16, "mps": 2**19, "cuda": 2**24}
EVAL_CHUNKS = 16

VAL_FRACTION = 0.10        # share of the corpus bytes (whole documents) held out for validation
HOLDOUT_SUFFIX = ".holdout"  # the holdout's folder beside the corpus folder: <folder>.holdout
HOLDOUT_FRACTION = 0.05    # of every corpus's bytes, kept out of train and val, scored only by the verifier
# Holdout bytes the verifier scores (evenly spaced slices, as for val): fixed per class, like EVAL_BYTES.
HOLDOUT_EVAL_BYTES = dict(EVAL_BYTES)
DOC_SEPARATOR = b"\x00"    # between documents in train.bin / val.bin; a real byte the model must predict

# A loss above this (nats/token) is "exploding"; train.py prints FAIL and stops.
FAIL_LOSS = 100.0

# The trusted tokenizers' sha256 by file name, kept in the holdout folder beside the corpus (runs can neither
# read nor write it): written only by trusted processes (harness.tokenizer.prepare_tokenizer), read by the pins.
TOKENIZER_MANIFEST = "tokenizers.json"
