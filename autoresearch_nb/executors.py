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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .pipeline import Hooks, Job, LocalSite, Outcome, StopSignal, failed, run_job
from .records import CurvePoint

PointSink = Callable[[int, CurvePoint], None]
__all__ = ["Executor", "Job", "LocalExecutor", "Outcome", "PointSink", "device_env", "gpu_count"]


class Executor(Protocol):
    """What the parallel driver needs of an executor (local threads or Ray tasks)."""

    slots: int
    on_phase: Callable[[int | str, str], None] | None  # the driver's: (experiment number, pipeline phase)

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
        self.on_phase: Callable[[int | str, str], None] | None = None  # the driver's: (number, phase)

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
        extra = {**self._env_for(slot.index), "AUTORESEARCH_WORKER": str(slot.index)}
        slot.thread = threading.Thread(target=self._run, args=(slot, job, extra, on_point), daemon=True,
                                       name=f"autoresearch-worker-{slot.index}")
        slot.thread.start()
        slot.started.wait(10)  # so pid() names the run as soon as submit returns
        return slot.index

    def _run(self, slot: _Slot, job: Job, extra: dict[str, str], on_point: PointSink) -> None:
        def on_start(pid: int) -> None:
            slot.pid = pid
            slot.started.set()

        site = LocalSite(self.boundary, slot.index + 1, extra)
        hooks = Hooks(on_point=lambda p: on_point(job.number, p), on_start=on_start,
                      on_phase=(lambda name: self.on_phase(job.number, name)) if self.on_phase else None)
        try:
            outcome = run_job(job, site, slot.stop, hooks, worker=slot.index)
        except Exception as e:  # the run could not start (sandbox, verifier): a failed row, never a hung driver
            why = failed(job, f"the run could not start: {type(e).__name__}: {e}")
            try:
                changed = tuple(site.changes(job))  # the next job's prepare undoes them
            except Exception:  # nothing was exported: nothing changed
                changed = ()
            outcome = Outcome(job.number, slot.index, why, changed)
        finally:
            slot.started.set()  # a command that could not start never called on_start
        with self._lock:
            slot.number, slot.pid = None, None
        self._done.put(outcome)

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
