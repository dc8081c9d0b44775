"""The budget clock: what "N seconds of training" means, and the loop's own measure of a run on it.

``budget_clock = auto | wall | cpu | flops``. On a CPU, a wall-clock budget measures the neighbours as much as the run: a
busy machine gives a run fewer steps, and the noise floor grows 10x (σ 0.124 against 0.006-0.012 quiet, the
README's quickstart beside other work). On the ``cpu`` clock a run trains for a fixed number of CPU seconds
*per thread it was given* (``AUTORESEARCH_THREADS``), so its step count does not depend on other processes. On a
GPU wall time stays the rule (Karpathy's definition: the GPU is the run's alone). ``flops`` is a work budget: one
budget second is a fixed number of model FLOPs that train.py reports (``H.work``), so a run at a fixed seed trains
the same steps however slow the machine is that day, and repeats exactly. ``auto``: ``flops`` for a harness
``train.py`` that reports its work on a CPU device, ``cpu`` for one that does not, ``wall`` elsewhere (a GPU; a
generic command, which has no harness clock to read).

Two measures use the clock:

* the run's own (the harness's ``H.now()``, which train.py's loop and the exported facts use): CPU seconds of
  the training process, all its threads, divided by the threads given;
* the loop's (:class:`Meter`), from outside, because the agent edits train.py: CPU seconds of the whole process
  tree (every process under the run, while it lives, and what each reaped child used), sampled twice a second
  and from ``wait4`` at the end, divided by the same threads. The hard timeout and the
  over-budget rule (:func:`over_budget`) use it. A wall-clock cap stays on the ``cpu`` clock
  (:data:`WALL_CAP`): a sleeping run uses no CPU.

What it cannot see: a process that leaves the run's tree (double fork, ``setsid``) and is re-parented outside it
stops counting once it leaves (the sandbox's pid namespace keeps bubblewrap runs inside); under bubblewrap
``wait4`` reports bubblewrap's own process only, so the run's last half second (its exit) may go uncounted.

>>> resolve("auto", "cpu", harness=True), resolve("auto", "cuda", harness=True), resolve("auto", "cpu", harness=False)
('cpu', 'wall', 'wall')
>>> resolve("auto", "cpu", harness=True, reports_work=True)
'flops'
"""
from __future__ import annotations

import time
from dataclasses import dataclass

CLOCKS = ("auto", "wall", "cpu", "flops")
ENV_CLOCK = "AUTORESEARCH_BUDGET_CLOCK"  # = harness.constants.ENV_BUDGET_CLOCK (the harness imports torch)
ENV_THREADS = "AUTORESEARCH_THREADS"     # the threads a run was given: the cpu clock's divisor
WALL_CAP = 3.0        # on the cpu clock, a run's wall time may be at most this many times its hard timeout
FLOPS_SLACK = 3.0     # on the flops clock, the CPU a run may use per budget second: a small model's FLOPs run
                      # slower than the reference rate, and the loop cannot see the work, only the CPU
SAMPLE_EVERY_S = 0.5  # how often the process tree's CPU is read while a run lives


def resolve(setting: str | None, device_class: str, harness: bool, reports_work: bool = False) -> str:
    """The clock a session uses: ``wall``, ``cpu`` or ``flops``. ``auto`` on a CPU device: ``flops`` for a harness
    train.py that reports its work (``H.work``: a run at one seed then repeats exactly), ``cpu`` for one that does
    not; ``wall`` on an accelerator and for a generic command."""
    value = (setting or "auto").strip().lower()
    if value not in CLOCKS:
        raise ValueError(f"budget_clock must be one of {', '.join(CLOCKS)}, not {setting!r}")
    if value == "auto":
        if not harness or device_class != "cpu":
            return "wall"
        return "flops" if reports_work else "cpu"
    return value


def counts_cpu(clock: str) -> bool:
    """Whether the loop measures a run on this clock in CPU seconds per thread (cpu, and flops: the loop cannot
    count a run's FLOPs from outside, so it bounds them by the CPU they take, :data:`FLOPS_SLACK`)."""
    return clock in ("cpu", "flops")


def hard_limit(timeout_s: float, clock: str) -> float:
    """The hard timeout on the loop's measure: ``timeout_s``, times :data:`FLOPS_SLACK` on the flops clock."""
    return float(timeout_s) * (FLOPS_SLACK if clock == "flops" else 1.0)


def overhead_allowance(budget_s: float, setting: float | None = None) -> float:
    """Seconds (on the clock) a run may use besides training before the loop calls it over budget: start-up,
    tokenizing, evaluation, export. ``budget_overhead_s``, else the larger of 15 s and half the budget (a
    5-minute GPU budget pays torch.compile's minute or two; the default train.py at a 30 s CPU budget used 4.7 s,
    34.7 CPU seconds per thread in all, benchmarks/clock_noise.py)."""
    if setting is not None:
        return float(setting)
    return max(15.0, 0.5 * float(budget_s))


def over_budget(run_s: float | None, clock: str, budget_s: float, tolerance: float, allowance: float) -> str | None:
    """Why a run measured at ``run_s`` seconds (whole tree, on ``clock``) used more than its budget allows, else
    None: the training budget with its tolerance, plus the allowance for everything that is not training."""
    if run_s is None:
        return None
    limit = budget_s * (1 + tolerance) * (FLOPS_SLACK if clock == "flops" else 1.0) + allowance
    if run_s <= limit:
        return None
    unit = "CPU seconds per thread" if counts_cpu(clock) else "seconds"
    return (f"the loop measured the run at {run_s:.1f} {unit} ({clock} clock, the whole process tree), over the "
            f"{budget_s:g} s budget's limit of {limit:.1f} (tolerance {tolerance:g} and {allowance:g} s for start-up "
            "and evaluation): it trained past its budget, whatever its own clock said")


@dataclass(frozen=True)
class Budget:
    """The clock one run is measured on, and its training budget when the loop enforces one (``seconds`` None:
    only the hard timeout, e.g. the setup command or a generic command that has no harness clock)."""

    clock: str = "wall"
    threads: int = 1
    seconds: float | None = None
    tolerance: float = 0.1
    allowance: float = 0.0

    def over(self, run_s: float | None) -> str | None:
        """Why a run measured at ``run_s`` is over this budget (:func:`over_budget`), else None."""
        if self.seconds is None:
            return None
        return over_budget(run_s, self.clock, self.seconds, self.tolerance, self.allowance)


class Meter:
    """The loop's measure of one run on its clock, from outside: :meth:`sample` while it lives, :meth:`reaped`
    with the ``wait4`` usage of its root, :meth:`seconds` on the clock."""

    def __init__(self, pid: int, clock: str, threads: int, started: float | None = None) -> None:
        self.pid, self.clock, self.threads = pid, clock, max(1, int(threads))
        self.started = time.monotonic() if started is None else started
        self.cpu = 0.0            # the most CPU seconds seen over the tree (a running max: samples only grow)
        self.ended: float | None = None

    def sample(self) -> float:
        """Read the tree's CPU seconds now (every live process's own and its reaped children's)."""
        import psutil
        total = 0.0
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return self.cpu
        for proc in tree:
            try:
                t = proc.cpu_times()
            except psutil.Error:  # gone between the listing and the read: its parent's reaped total has it
                continue
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        self.cpu = max(self.cpu, total)
        return self.cpu

    def reaped(self, usage: object) -> None:
        """The root's ``wait4`` usage: its own CPU and every descendant it (or they) waited for, exactly."""
        total = float(getattr(usage, "ru_utime", 0.0)) + float(getattr(usage, "ru_stime", 0.0))
        self.cpu = max(self.cpu, total)
        self.ended = time.monotonic()

    def seconds(self) -> float:
        """The run's seconds so far on its clock: wall since start, or tree CPU / threads given."""
        if counts_cpu(self.clock):
            return self.cpu / self.threads
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


__all__ = ["Budget", "CLOCKS", "ENV_CLOCK", "ENV_THREADS", "FLOPS_SLACK", "Meter", "WALL_CAP", "counts_cpu",
           "hard_limit", "over_budget", "overhead_allowance", "resolve"]
