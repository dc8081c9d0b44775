"""The Ray executor: each experiment is a Ray task needing one GPU (or the configured CPUs).

``RayExecutor(workspace, workers, address=None)`` starts a local Ray instance (loopback only, no usage
stats, no auth token file) or connects to a cluster by address (``"auto"`` or ``"ray://host:10001"``). A job
ships the experiment's tree as a ``git archive`` tarball, so workers need no shared filesystem, only the same
Python environment (autoresearch_nb installed). Progress points stream back through a Ray queue; the log comes
back with the result and is written locally by the driver. A task whose worker dies becomes a ``lost``
outcome (recorded as interrupted); its command dies with it (see :mod:`autoresearch_nb.guard`).
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .boundary import THREAD_VARS
from . import environ
from .executors import PointSink
from .pipeline import Job, Outcome
from .records import CurvePoint, RunResult

log = logging.getLogger("autoresearch_nb")

# A loaded 2-core machine starts Ray's agents slowly: the raylet gives the dashboard agent 15 s (not settable) to
# report its port, and workers it prestarts (one per CPU, each importing ray) compete with that agent for the
# cores. With prestarting off a local instance started 2 times in 3 at load 9 on 2 cores, with it on 0 times
# in 5. A task's worker starts on first use instead (seconds, against runs of minutes).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_agent_register_timeout_ms": "120000", "RAY_enable_worker_prestart": "0",
           "RAY_prestart_worker_first_driver": "0",
           # A worker that exits would SIGKILL its children, the guard among them, before the guard can end the
           # run's whole group (autoresearch_nb.guard); the guard does that itself when its worker is gone.
           "RAY_kill_child_processes_on_worker_exit": "0"}
MAX_LOG = 4 << 20  # bytes of a remote log brought back
START_ATTEMPTS = 3  # a local instance whose agents missed the raylet's start-up window is started again
# Besides AUTORESEARCH_*: the run's thread-pool sizes (its share of the cores; else Ray's worker default of 1).
SHIPPED = ("PYTHONUNBUFFERED", *THREAD_VARS)


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
    """Connect to ``address`` or start a local instance listening on 127.0.0.1 only."""
    for k, v in RAY_ENV.items():
        environ.set_default(k, v)
    import ray

    if ray.is_initialized():
        return ray
    common = dict(log_to_driver=False, configure_logging=False, ignore_reinit_error=True)
    if address:
        ray.init(address=address, **common)
        return ray
    for attempt in range(1, START_ATTEMPTS + 1):
        before = _children()
        try:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     **common)
            return ray
        except Exception as e:
            # Only the agents' start-up race is tried again; the failed attempt's processes (GCS, raylet, log
            # monitor), which ray.shutdown() does not end, go first so they do not slow the next one.
            if "timed out during startup" not in str(e) or attempt == START_ATTEMPTS:
                raise
            log.warning("a local Ray instance did not start in time (attempt %d of %d): %s", attempt,
                        START_ATTEMPTS, e)
            _end(_children() - before)
    return ray


def _children() -> set[Any]:
    """This process's descendants that are Ray's (its binaries and scripts live under a ``ray/`` folder)."""
    import psutil
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "/ray/" in " ".join(p.cmdline()):
                out.add(p)
        except psutil.ZombieProcess:  # a crashed raylet: reaped by the wait below
            out.add(p)
        except psutil.Error:
            continue
    return out


def _end(processes: set[Any]) -> None:
    import psutil
    for p in processes:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(processes), timeout=10)


class ScratchSite:
    """A Ray task's :class:`~.pipeline.Site`: the job's tree unpacked into a scratch folder (no git), the
    worker's own environment scrubbed, the sandbox policy built here (this worker's mode may differ from the
    driver's), the command under the guard that ends it if the worker dies. What the run changed is found by
    comparing content hashes with the commit's tree listing shipped with the job (:func:`rundir.diff_tree`):
    no ``git init``, as a run could commit there to hide its changes."""

    def __init__(self, settings: dict[str, Any], tar: bytes, scratch: Path) -> None:
        from autoresearch_nb import rundir
        self.settings = settings
        self.tar = tar
        self.scratch = scratch
        self.root = scratch / "run"
        self.tmp = rundir.tmp_for(self.root)
        self.log_cap = int(settings.get("log_cap_mb", 64)) << 20
        self.secrets: tuple[str, ...] = ()
        self.policy: Any = None
        self.export: Path | None = None

    def check_disk(self, during: bool = False) -> str | None:
        from autoresearch_nb import sandbox
        floor = self.settings.get("disk_floor_mb" if during else "min_free_mb") or 0
        when = "while a run writes (disk_floor_mb)" if during else "before a run (min_free_mb)"
        return sandbox.check_disk(self.scratch, int(floor), when) if floor else None

    def prepare(self, job: Job) -> Path:
        self.root.mkdir()
        with tarfile.open(fileobj=io.BytesIO(self.tar)) as tf:
            tf.extractall(self.root, filter="data")
        self.tmp.mkdir()
        return self.root

    def env(self, job: Job) -> dict[str, str]:
        from autoresearch_nb import sandbox, verify
        from autoresearch_nb.scrub import scrub_env
        extra = dict(job.env)
        self.export = _export_folder(extra.get(verify.ENV_EXPORT), self.scratch, job.number)
        if self.export is not None:
            extra[verify.ENV_EXPORT] = str(self.export)
        # The worker's own environment may hold secrets (a cluster's credentials): scrub it like a local run.
        clean = scrub_env(allow=job.allow, extra=extra)
        self.secrets = tuple(clean.secrets)
        cfg = self.settings
        self.policy = sandbox.policy_for(self.root, tmp=self.tmp, mode=cfg.get("sandbox", "auto"),
                                         network=bool(cfg.get("network", False)), memory_mb=cfg.get("memory_mb"),
                                         file_mb=cfg.get("file_mb", sandbox.DEFAULT_FILE_MB),
                                         write=(str(self.export),) if self.export is not None else (),
                                         data=sandbox.dataset_cache(clean.env))
        return clean.env

    def begin(self, job: Job, run_dir: Path, env: Any) -> Any:
        from autoresearch_nb import sandbox, verify
        check = job.verification
        if check is None:  # begun before the run, so the model verifier warms up while it trains
            return None
        cfg = self.settings
        return check.begin(run_dir, env, job.log_path,
                           confine=verify.confined(cfg.get("sandbox", "auto"), env=env, memory_mb=cfg.get("memory_mb"),
                                                   file_mb=cfg.get("file_mb", sandbox.DEFAULT_FILE_MB)),
                           confine_command=lambda command: sandbox.wrap(command, self.policy))

    def argv(self, job: Job) -> list[str]:
        from autoresearch_nb import guard, sandbox
        return [sys.executable, guard.__file__, "--parent", str(os.getpid()), "--",
                *sandbox.wrap(job.command, self.policy)]

    def label(self) -> str:
        from autoresearch_nb import sandbox
        return sandbox.label(self.policy)

    def changes(self, job: Job) -> list[str]:
        from autoresearch_nb import rundir
        try:
            return rundir.diff_tree({p: tuple(e) for p, e in self.settings["tree"].items()}, self.root)
        except OSError as e:
            return [f"the run directory ({e.strerror})"]


def _run_task(job: Job, settings: dict[str, Any], tar: bytes, sink: Any) -> dict[str, Any]:
    """Runs on a Ray worker: the one pipeline (:func:`.pipeline.run_job`) at a :class:`ScratchSite`, its
    points and phases streamed through ``sink``, the verifier's number and logs brought back."""
    from autoresearch_nb.pipeline import Hooks, StopSignal, run_job

    scratch = Path(tempfile.mkdtemp(prefix="autoresearch-ray-"))
    local = str(scratch / "run.log")  # the log is written here and shipped back under the driver's name
    there = replace(job, log_path=local)
    try:
        site = ScratchSite(settings, tar, scratch)
        last = [0.0]

        def on_point(p: CurvePoint) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1:  # a remote call per point would be too many
                last[0] = now
                sink.put(("point", job.number, p.step, p.elapsed_s, p.loss, p.values))

        interrupted: list[RunResult] = []
        hooks = Hooks(on_point=on_point, on_interrupt=interrupted.append,
                      on_phase=lambda name: sink.put(("phase", job.number, name)))
        try:
            outcome = run_job(there, site, StopSignal(), hooks)
        except BaseException:  # ray.cancel: the run was ended and reported as interrupted
            if not interrupted:
                raise
            outcome = Outcome(job.number, 0, interrupted[0], tuple(site.changes(job)))
        result = outcome.result
        log_path = Path(local)
        data = log_path.read_bytes()[-MAX_LOG:] if log_path.exists() else b""
        out = asdict(result)
        out["points"] = [asdict(p) for p in result.points]
        logs = {}
        for suffix in (".verify.log", ".guard.log"):  # the verifier's and the guard's, under the driver's names
            path = log_path.with_suffix(suffix)
            if path.exists():
                logs[suffix] = path.read_bytes()[-MAX_LOG:].decode("utf-8", "replace")
                if out.get("flag_reason"):
                    out["flag_reason"] = out["flag_reason"].replace(
                        str(path), str(Path(job.log_path).with_suffix(suffix)))
        return {"result": out, "changed": list(outcome.changed), "log": data.decode("utf-8", "replace"),
                "logs": logs, "halt": outcome.halt}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _export_folder(asked: str | None, scratch: Path, number: int) -> Path | None:
    """Where the run exports its model on this worker: the driver's folder when its artifacts folder is here
    too (this machine, or a shared filesystem), so the best and the last models are kept; else the task's
    scratch (deleted with it: on a remote node only the verified number comes back)."""
    if not asked:
        return None
    folder = Path(asked)
    if folder.parent.is_dir():
        return folder
    return scratch / "artifacts" / str(number)


class RayExecutor:
    """Up to ``workers`` experiments at once as Ray tasks."""

    def __init__(self, workspace: Any, workers: int, address: str | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: float | None = None, config: Any = None) -> None:
        from .executors import gpu_count

        self.workspace = workspace
        self.config = config  # the sandbox_* settings each task applies on its worker
        self.slots = workers
        local_gpus = gpu_count() if not address else None
        self.ray = start_ray(address, num_cpus=None if address else max(workers, os.cpu_count() or 1),
                             num_gpus=local_gpus)
        from ray.util.queue import Queue

        gpus = gpus_per_worker if gpus_per_worker is not None else (1 if (local_gpus or 0) > 0 else 0)
        cpus = cpus_per_worker if cpus_per_worker is not None else (0 if gpus else 1)
        self._sink = Queue()
        self._remote = self.ray.remote(_run_task).options(num_gpus=gpus, num_cpus=cpus, max_retries=0)
        self._refs: dict[Any, tuple[int, int, Job]] = {}
        self._on_point: dict[int, PointSink] = {}
        self.on_phase: Callable[[int | str, str], None] | None = None  # the driver's: (number, phase)

    def free(self) -> int:
        return self.slots - len(self._refs)

    def pid(self, number: int) -> int | None:
        """None: the run's process lives on a Ray worker (the guard ends it if that worker dies)."""
        return None

    def submit(self, job: Job, on_point: PointSink) -> int:
        used = {w for _, w, _ in self._refs.values()}
        worker = next(i for i in range(self.slots) if i not in used)
        tar = self.workspace.archive(job.sha)
        # Only the run's own variables travel: the worker node has its own PATH, HOME and so on.
        env = {k: v for k, v in job.env.items()
               if k.startswith("AUTORESEARCH_") or k in SHIPPED or k in job.allow}
        from .rundir import tree
        cfg = self.config
        settings = {"tree": tree(self.workspace.root, job.sha), "sandbox": cfg.sandbox if cfg else "auto",
                    "network": bool(cfg.sandbox_network) if cfg else False,
                    "memory_mb": cfg.sandbox_memory_mb if cfg else None,
                    "file_mb": cfg.sandbox_file_mb if cfg else 10240,
                    "log_cap_mb": cfg.log_cap_mb if cfg else 64,
                    "min_free_mb": cfg.min_free_mb if cfg else 0, "disk_floor_mb": cfg.disk_floor_mb if cfg else 0}
        shipped = replace(job, env={**env, "AUTORESEARCH_WORKER": str(worker)})
        ref = self._remote.remote(shipped, settings, tar, self._sink)
        self._refs[ref] = (job.number, worker, job)
        self._on_point[job.number] = on_point
        return worker

    def _drain(self) -> None:
        while True:
            try:
                item = self._sink.get_nowait()
            except Exception:
                return
            if item[0] == "phase":
                if self.on_phase is not None:
                    self.on_phase(item[1], item[2])
                continue
            _, number, step, elapsed, loss, values = item
            sink = self._on_point.get(number)
            if sink:
                sink(number, CurvePoint(step, elapsed, loss, values))

    def poll(self, timeout: float) -> list[Outcome]:
        self._drain()
        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        self._drain()
        out = []
        for ref in ready:
            number, worker, job = self._refs.pop(ref)
            self._on_point.pop(number, None)
            try:
                data = self.ray.get(ref)
            except Exception as e:  # the worker or its node died, or the task was cancelled by force
                reason = f"worker lost: {type(e).__name__}"
                out.append(Outcome(number, worker, RunResult(None, False, 0.0, {}, False, reason, job.log_path,
                                                             interrupted=True), lost=True))
                continue
            r = data["result"]
            r["points"] = tuple(CurvePoint(**p) for p in r["points"])
            r["log_path"] = job.log_path
            Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
            Path(job.log_path).write_text(data["log"])
            for suffix, text in data.get("logs", {}).items():
                Path(job.log_path).with_suffix(suffix).write_text(text)
            out.append(Outcome(number, worker, RunResult(**r), tuple(data["changed"]), halt=data.get("halt")))
        return out

    def cancel(self, number: int | None = None) -> None:
        for ref, (n, _, _) in list(self._refs.items()):
            if number is None or n == number:
                self.ray.cancel(ref, force=False)

    def close(self) -> None:
        self.cancel()
        deadline = time.monotonic() + 30
        while self._refs and time.monotonic() < deadline:
            self.poll(0.2)
