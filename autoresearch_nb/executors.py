"""Executors run experiments for parallel workers: ``local`` (threads + subprocesses, no extra dependency) and
``ray`` (one Ray task per experiment, on this machine or a cluster).

The driver (the loop) alone writes the store and moves the branch; an executor only turns a :class:`Job`
(an experiment commit to run) into an :class:`Outcome` (the run's result and the paths it changed).

Local workers each have a run directory (:mod:`.boundary`, outside the checkout) and a device: on a GPU
machine one GPU each (``CUDA_VISIBLE_DEVICES``); every worker's run gets its share of the cores as thread-pool
sizes (``OMP_NUM_THREADS``..., from the run plan's environment, unless the user set them).
Ray workers may not share a filesystem with the driver, so a job ships the experiment's tree as a ``git
archive`` tarball with its listing; the task unpacks it into a plain directory (no git), runs it under the
sandbox, compares it with the listing, streams progress points back through a Ray queue and returns its result.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from .records import CurvePoint, RunResult
from .trial import StopSignal, execute
from .verify import Verification

PointSink = Callable[[int, CurvePoint], None]


@dataclass(frozen=True)
class Job:
    """One experiment commit to run."""

    number: int
    sha: str
    command: str
    editable: str
    timeout_s: float
    env: dict[str, str]
    log_path: str
    allow: tuple[str, ...] = ()        # secret-looking variables passed through on purpose (env_allow)
    stall_s: float | None = None       # the runner's stall watchdog (Config.stall_s); None: off
    verification: Verification | None = None  # verify and guard after the run (autoresearch_nb.verify)


@dataclass(frozen=True)
class Outcome:
    """What came back from a worker."""

    number: int
    worker: int
    result: RunResult
    changed: tuple[str, ...] = ()       # paths the run changed besides committed content (violations)
    lost: bool = False                  # the worker or node died; the result is a stand-in


class Executor(Protocol):
    """What the parallel driver needs of an executor (local threads or Ray tasks)."""

    slots: int

    def free(self) -> int: ...                                       # workers without a job
    def submit(self, job: Job, on_point: PointSink) -> int: ...      # returns the worker index
    def pid(self, number: int) -> int | None: ...                    # the run's process group, if local
    def poll(self, timeout: float) -> list[Outcome]: ...
    def cancel(self, number: int | None = None) -> None: ...         # None: every job
    def close(self) -> None: ...


def gpu_count() -> int:
    """GPUs visible through NVML (0 without a driver)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


def device_env(worker: int, gpus: int | None = None) -> dict[str, str]:
    """Environment that gives worker ``worker`` its own GPU (none on a machine without one). Its share of the
    cores comes with the job's environment (:func:`autoresearch_nb.boundary.thread_env`)."""
    gpus = gpu_count() if gpus is None else gpus
    return {"CUDA_VISIBLE_DEVICES": str(worker % gpus) if gpus > 0 else ""}


@dataclass
class _Slot:
    index: int
    path: Path
    number: int | None = None
    pid: int | None = None
    stop: StopSignal = field(default_factory=StopSignal)
    started: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class LocalExecutor:
    """K workers on this machine: a thread per running job, each in its own run directory (an export of the
    job's commit, outside the checkout) under the sandbox; worker i uses the boundary's run directory i + 1."""

    def __init__(self, boundary: Any, workers: int, env_for: Callable[[int], dict[str, str]] | None = None) -> None:
        self.boundary = boundary
        self.slots = workers
        self._env_for = env_for or device_env
        self._slots = [_Slot(i, boundary.run_dir(i + 1)) for i in range(workers)]
        self._done: "queue.Queue[Outcome]" = queue.Queue()
        self._lock = threading.Lock()

    def free(self) -> int:
        with self._lock:
            return sum(s.number is None for s in self._slots)

    def submit(self, job: Job, on_point: PointSink) -> int:
        with self._lock:
            slot = next((s for s in self._slots if s.number is None), None)
            if slot is None:
                raise RuntimeError("no free worker")
            slot.number, slot.pid = job.number, None
            slot.stop.clear()
            slot.started.clear()
        try:
            self.boundary.prepare(job.sha, slot.index + 1)
        except BaseException:
            with self._lock:
                slot.number = None
            raise
        env = {**job.env, **self._env_for(slot.index), "AUTORESEARCH_WORKER": str(slot.index)}
        slot.thread = threading.Thread(target=self._run, args=(slot, job, env, on_point), daemon=True,
                                       name=f"autoresearch-worker-{slot.index}")
        slot.thread.start()
        slot.started.wait(10)  # so pid() names the run as soon as submit returns
        return slot.index

    def _run(self, slot: _Slot, job: Job, env: dict[str, str], on_point: PointSink) -> None:
        def on_start(pid: int) -> None:
            slot.pid = pid
            slot.started.set()

        worker = slot.index + 1
        verify = None
        try:
            argv = self.boundary.argv(job.command, worker)
            check = job.verification
            verify = None if check is None else self.boundary.begin(check, slot.path, env, job.log_path, worker)
            result = execute(argv, slot.path, job.log_path, env=env,
                             timeout_s=job.timeout_s, stop=slot.stop, on_point=lambda p: on_point(job.number, p),
                             on_start=on_start, stall_s=job.stall_s, secrets=self.boundary.secrets,
                             log_cap=int(self.boundary.config.log_cap_mb) << 20, verify=verify,
                             watch=lambda: self.boundary.check_disk(during=True))
            result = replace(result, sandbox=self.boundary.label(worker))
        except Exception as e:  # the run could not start (sandbox, verifier): a failed row, never a hung driver
            if verify is not None:
                verify.close()
            result = RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=True,
                               error=f"the run could not start: {type(e).__name__}: {e}", log_path=str(job.log_path))
        finally:
            slot.started.set()  # a command that could not start never called on_start
        changed = tuple(self.boundary.changes(job.sha, worker))  # the next job's prepare undoes them
        with self._lock:
            slot.number, slot.pid = None, None
        self._done.put(Outcome(job.number, slot.index, result, changed))

    def poll(self, timeout: float) -> list[Outcome]:
        out: list[Outcome] = []
        try:
            out.append(self._done.get(timeout=timeout))
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        return out

    def cancel(self, number: int | None = None) -> None:
        with self._lock:
            for s in self._slots:
                if s.number is not None and (number is None or s.number == number):
                    s.stop.set(force=True, reason="cancelled")

    def pid(self, number: int) -> int | None:
        """The process (group) id of experiment ``number``'s run, while it runs here."""
        with self._lock:
            slot = next((s for s in self._slots if s.number == number), None)
            return slot.pid if slot else None

    def close(self) -> None:
        self.cancel()
        for s in self._slots:
            if s.thread is not None:
                s.thread.join(timeout=30)
