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
from typing import Any

from .boundary import THREAD_VARS
from .executors import Job, Outcome, PointSink
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
        os.environ.setdefault(k, v)
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


def _run_task(job: dict[str, Any], tar: bytes, sink: Any) -> dict[str, Any]:
    """Runs on a Ray worker: unpack the tree, run the command under the guard and the sandbox, verify it as a
    local run is (:mod:`autoresearch_nb.verify`, the model verifier started with the run), report back.

    No ``git init``: a run could commit there to hide its changes. What it changed is found by comparing
    content hashes with the commit's tree listing shipped with the job (:func:`rundir.diff_tree`)."""
    from autoresearch_nb import rundir, sandbox, verify
    from autoresearch_nb.runner import Run
    from autoresearch_nb.scrub import scrub_env

    scratch = Path(tempfile.mkdtemp(prefix="autoresearch-ray-"))
    root = scratch / "run"
    pending = None
    try:
        root.mkdir()
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            tf.extractall(root, filter="data")
        tmp = rundir.tmp_for(root)
        tmp.mkdir()
        extra = dict(job["env"])
        export = _export_folder(extra.get(verify.ENV_EXPORT), scratch, job["number"])
        if export is not None:
            extra[verify.ENV_EXPORT] = str(export)
        mode, file_mb = job.get("sandbox", "auto"), job.get("file_mb", sandbox.DEFAULT_FILE_MB)
        # The worker's own environment may hold secrets (a cluster's credentials): scrub it like a local run.
        clean = scrub_env(allow=tuple(job.get("allow", ())), extra=extra)
        policy = sandbox.policy_for(root, tmp=tmp, mode=mode, network=bool(job.get("network", False)),
                                    memory_mb=job.get("memory_mb"), file_mb=file_mb,
                                    write=(str(export),) if export is not None else (),
                                    data=sandbox.dataset_cache(clean.env))
        log_path = root.parent / f"{root.name}.log"
        last = [0.0]

        def on_point(p: CurvePoint) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1:  # a remote call per point would be too many
                last[0] = now
                sink.put((job["number"], p.step, p.elapsed_s, p.loss, p.values))

        from autoresearch_nb import guard

        check = job.get("verification")
        if check is not None:  # begun before the run, so the model verifier warms up while it trains
            pending = check.begin(root, clean.env, log_path,
                                  confine=verify.confined(mode, env=clean.env, memory_mb=job.get("memory_mb"),
                                                          file_mb=file_mb),
                                  confine_command=lambda command: sandbox.wrap(command, policy))
        argv = [sys.executable, guard.__file__, "--parent", str(os.getpid()), "--",
                *sandbox.wrap(job["command"], policy)]
        run = Run(argv, root, log_path, timeout_s=job["timeout_s"], env=clean.env, on_point=on_point,
                  stall_s=job.get("stall_s"), secrets=clean.secrets)
        try:
            result = run.wait()
        except BaseException:  # ray.cancel: end the command, report it as interrupted
            run.cancel()
            result = run.wait()
        if pending is not None and not result.interrupted:
            result = pending(result)
        result = replace(result, sandbox=sandbox.label(policy))  # this worker's, which may differ from the driver's
        try:
            changed = rundir.diff_tree({p: tuple(e) for p, e in job["tree"].items()}, root)
        except OSError as e:
            changed = [f"the run directory ({e.strerror})"]
        data = log_path.read_bytes()[-MAX_LOG:] if log_path.exists() else b""
        log_path.unlink(missing_ok=True)
        out = asdict(result)
        out["points"] = [asdict(p) for p in result.points]
        logs = {}
        for suffix in (".verify.log", ".guard.log"):  # the verifier's and the guard's, under the driver's names
            path = log_path.with_suffix(suffix)
            if path.exists():
                logs[suffix] = path.read_bytes()[-MAX_LOG:].decode("utf-8", "replace")
                if out.get("flag_reason"):
                    out["flag_reason"] = out["flag_reason"].replace(
                        str(path), str(Path(job["log_path"]).with_suffix(suffix)))
        return {"result": out, "changed": changed, "log": data.decode("utf-8", "replace"), "logs": logs}
    finally:
        if pending is not None:
            pending.close()
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
        ref = self._remote.remote({"number": job.number, "command": job.command, "timeout_s": job.timeout_s,
                                   "env": {**env, "AUTORESEARCH_WORKER": str(worker)}, "allow": job.allow,
                                   "stall_s": job.stall_s, "tree": tree(self.workspace.root, job.sha),
                                   "sandbox": cfg.sandbox if cfg else "auto",
                                   "network": bool(cfg.sandbox_network) if cfg else False,
                                   "memory_mb": cfg.sandbox_memory_mb if cfg else None,
                                   "file_mb": cfg.sandbox_file_mb if cfg else 10240,
                                   "verification": job.verification, "log_path": job.log_path},
                                  tar, self._sink)
        self._refs[ref] = (job.number, worker, job)
        self._on_point[job.number] = on_point
        return worker

    def _drain(self) -> None:
        while True:
            try:
                number, step, elapsed, loss, values = self._sink.get_nowait()
            except Exception:
                return
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
            out.append(Outcome(number, worker, RunResult(**r), tuple(data["changed"])))
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
