"""What a run reads from its environment: seed, time budget, device, cache folders, and the chip's peak FLOP/s."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from . import constants as C

# Dense bf16 tensor-core peaks (FLOP/s) by a substring of torch.cuda.get_device_name().
GPU_PEAK_BF16 = {
    "H200": 989e12, "H100": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12,
    "A100": 312e12, "A800": 312e12, "A10G": 70e12, "A10": 125e12, "L40S": 362e12, "L4": 121e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
}


def env(name: str) -> str:
    """The value of variable ``name`` ("" when unset), stripped: the harness's one reader of its environment."""
    return os.environ.get(name, "").strip()


def seed() -> int:
    """The run's seed: ``AUTORESEARCH_SEED`` or 42. ``torch.manual_seed(harness.seed())``"""
    raw = os.environ.get(C.ENV_SEED, "").strip()
    return int(raw) if raw else C.DEFAULT_SEED


def device(override: str | None = None):
    """The torch device to train on: ``AUTORESEARCH_DEVICE`` if set, else cuda > mps > cpu."""
    import torch
    name = override or os.environ.get(C.ENV_DEVICE, "").strip()
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_class(dev=None) -> str:
    """``cpu``, ``mps`` or ``cuda``: picks the per-class defaults. ``AUTORESEARCH_DEVICE_CLASS`` forces one, so a
    test can drive the CUDA branch of train.py on a CPU."""
    forced = os.environ.get(C.ENV_DEVICE_CLASS, "").strip()
    if forced:
        if forced not in C.DEVICE_CLASSES:
            raise ValueError(f"{C.ENV_DEVICE_CLASS} must be one of {C.DEVICE_CLASSES}, not {forced!r}")
        return forced
    dev = dev if dev is not None else device()
    return dev.type if dev.type in C.DEVICE_CLASSES else "cpu"


def _positive(name: str, unit: str, defaults: dict, dev) -> float:
    """A positive number from the environment variable ``name``, else the device class's default."""
    raw = os.environ.get(name, "").strip()
    if raw:
        value = float(raw)
        if not value > 0:
            raise ValueError(f"{name} must be a positive number of {unit}, not {raw!r}")
        return value
    return defaults[device_class(dev)]


def time_budget(dev=None) -> float:
    """Training seconds: ``AUTORESEARCH_TIME_BUDGET``, else the device class's default (120 s on CPU)."""
    return _positive(C.ENV_TIME_BUDGET, "seconds", C.TIME_BUDGET, dev)


def budget_clock(dev=None) -> str:
    """What a second of the time budget is: ``cpu`` (CPU seconds of this process, all its threads, per thread
    it was given), ``flops`` (:func:`work_rate` model FLOPs, as train.py reports them with :func:`work`) or
    ``wall``. ``AUTORESEARCH_BUDGET_CLOCK`` (the loop sets it), else by device class."""
    raw = os.environ.get(C.ENV_BUDGET_CLOCK, "").strip().lower()
    if raw:
        if raw not in ("wall", "cpu", "flops"):
            raise ValueError(f"{C.ENV_BUDGET_CLOCK} must be 'wall', 'cpu' or 'flops', not {raw!r}")
        return raw
    return C.BUDGET_CLOCK[device_class(dev)]


def work_rate(dev=None) -> float:
    """Model FLOPs per budget second on the flops clock: ``AUTORESEARCH_WORK_RATE``, else the device class's."""
    return _positive(C.ENV_WORK_RATE, "FLOPs", C.WORK_RATE, dev)


def threads() -> int:
    """The threads this run was given: ``AUTORESEARCH_THREADS`` (the loop sets it), else torch's count."""
    raw = os.environ.get(C.ENV_THREADS, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    import torch
    return max(1, torch.get_num_threads())


_NOW: list = []  # the clock function, chosen at the first call (the environment does not change during a run)
_WORK = [0.0]    # model FLOPs train.py reported so far (the flops clock)


def work(flops: float) -> None:
    """Report ``flops`` of model work done (train.py: each step's ``flops_per_token * tokens``). On the flops
    clock this is what :func:`now` counts, so a run at a fixed seed trains the same steps however busy the
    machine is; on the other clocks it does nothing."""
    _WORK[0] += float(flops)


def now() -> float:
    """Seconds on the budget clock (:func:`budget_clock`), for differences: train.py times its steps with it.
    On the cpu clock: ``time.process_time()`` (every thread of this process) divided by :func:`threads`, so a
    neighbour on the machine does not shorten training. The loop measures the whole process tree from outside
    as well (autoresearch_nb.clock): children's CPU counts there. On the flops clock: the work reported with
    :func:`work`, in budget seconds (:func:`work_rate`)."""
    if not _NOW:
        if budget_clock() == "flops":
            rate = work_rate()
            _NOW.append(lambda: _WORK[0] / rate)
        elif budget_clock() == "cpu":
            share = float(threads())
            _NOW.append(lambda: time.process_time() / share)
        else:
            _NOW.append(time.perf_counter)
    return _NOW[0]()


def seq_len(dev=None) -> int:
    return C.SEQ_LEN[device_class(dev)]


def cache_root() -> Path:
    raw = os.environ.get(C.ENV_CACHE, "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "autoresearch_nb"


def dataset_dir(name: str | None = None) -> Path:
    """The prepared dataset folder: ``AUTORESEARCH_DATA``, else ``<cache>/<AUTORESEARCH_DATASET>``, else
    ``<cache>/<default_dataset()>``. The loop's ``sandbox.dataset_cache`` follows the same rule."""
    if name is None:
        raw = os.environ.get(C.ENV_DATA, "").strip()
        if raw:
            return Path(raw).expanduser()
        name = os.environ.get(C.ENV_DATASET, "").strip() or default_dataset()
    return cache_root() / name


def default_dataset(cls: str | None = None) -> str:
    """``stdlib``; on CUDA a prepared ``climbmix`` or ``tinystories`` (``CUDA_PREFERRED``) in the cache."""
    if (cls or device_class()) == "cuda":
        for name in C.CUDA_PREFERRED:
            if (cache_root() / name / "meta.json").is_file():
                return name
    return C.DEFAULT_DATASET


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fast_bf16(dev) -> bool:
    """Whether bf16 autocast pays on this device. On a CPU only with AMX or AVX512-BF16: on plain AVX2, bf16
    matmuls run about 10x *slower* than fp32."""
    if dev.type in ("cuda", "mps"):
        return True
    if platform.machine().lower() in ("arm64", "aarch64"):
        return False
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def peak_flops(dev, dtype=None) -> float:
    """Peak matmul FLOP/s behind MFU. GPUs: a table of dense bf16 peaks (unknown ones are measured); CPUs: the
    theoretical peak (:func:`cpu_peak_flops`); ``AUTORESEARCH_PEAK_FLOPS`` overrides both."""
    import torch
    raw = os.environ.get(C.ENV_PEAK_FLOPS, "").strip()
    if raw:
        return float(raw)
    dtype = dtype or torch.float32
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        for key, value in GPU_PEAK_BF16.items():
            if key in name:
                return value if dtype != torch.float32 else value / 2
        return measure_matmul_flops(dev, dtype)
    return cpu_peak_flops(dtype)


def cpu_peak_flops(dtype=None, threads: int | None = None, ghz: float | None = None,
                   flags: set[str] | None = None) -> float:
    """The CPU's theoretical matmul peak: threads x clock x FLOPs per cycle of its widest vector unit.

    A theoretical peak, not a measured one: a measurement taken while the machine is busy would stick and
    make MFU exceed 100 % later (seen here). FLOPs/cycle/core: AVX-512 64, AVX2+FMA 32, AVX 16 (fp32); bf16
    with AMX 1024, with AVX512-BF16 128.
    """
    import torch
    dtype = dtype or torch.float32
    threads = threads or torch.get_num_threads()
    flags = cpu_flags() if flags is None else flags
    ghz = ghz or _cpu_ghz()
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16 if "avx" in flags else 8
    if dtype == torch.bfloat16:
        per_cycle = 1024 if "amx_bf16" in flags else 128 if "avx512_bf16" in flags else per_cycle
    return threads * ghz * 1e9 * per_cycle


def _cpu_ghz() -> float:
    try:
        import psutil
        freq = psutil.cpu_freq()
        if freq and (freq.max or freq.current):
            return (freq.max or freq.current) / 1000.0
    except Exception:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000.0
    except (OSError, ValueError):
        pass
    return 3.0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure_matmul_flops(dev, dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """Best-of-3 sustained FLOP/s of an n x n x n ``F.linear`` in ``dtype`` (the path nn.Linear takes)."""
    import torch
    import torch.nn.functional as F
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    F.linear(a, b)
    sync()
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            F.linear(a, b)
            count += 1
        sync()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best
