"""Run one experiment's command in a subprocess and watch it.

What it does:
- starts the command in its own session / process group, with a scrubbed environment (no variable whose
  name looks like a key, token, secret or password, unless allow-listed);
- streams stdout+stderr into a per-run log file and parses progress lines live (split on ``\\r`` and ``\\n``);
- kills the whole process group at the hard timeout (SIGTERM, then SIGKILL after a grace period), and also
  kills whatever is left of the group when the main process exits, so no orphan keeps running;
- with ``stall_s``, a watchdog for overnight runs: no output at all (not even a ``\r`` progress redraw) for
  that long kills the group the same way, and the result says ``stalled`` (and ``timed_out``) with the reason
  "stalled: no output for N min";
- returns a :class:`RunResult`: exit code, timed out, the summary after ``---``, FAIL, last traceback line.

What it does not protect against: a child that leaves the process group on purpose (``setsid``/double fork),
network or filesystem access by the command, resource exhaustion (no memory or CPU limits are set). The
command runs with the user's privileges; it is their code and their agent's code.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import protocol
from . import scrub
from .clock import SAMPLE_EVERY_S, WALL_CAP, Meter, counts_cpu
from .records import CurvePoint, RunResult
from .waiting import waiting

GRACE_S = 2.0
WATCH_EVERY_S = 1.0  # how often a run's ``watch`` check (the disk floor) is called
MAX_LINE = 4096      # characters of one output line kept for parsing; a flood of long lines stays bounded
LOG_CAP = 64 << 20   # bytes of one run's log: the first and the last half are kept, the middle is cut
MAX_POINTS = 10_000  # points kept in the result; past it every other one is dropped (the curve keeps its shape)


def scrub_env(base: Mapping[str, str] | None = None, allow: tuple[str, ...] = (),
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a run sees: ``base`` without variables whose name or value looks secret (unless in
    ``allow``), plus ``extra``. One rule for every subprocess: :func:`autoresearch_nb.scrub.scrub_env`."""
    return scrub.scrub_env(base, allow=allow, extra=extra).env


def parse_progress(line: str, elapsed_s: float) -> CurvePoint | None:
    """Turn a progress line into a point, or None when it carries no step/loss (rules: :mod:`.protocol`).

    >>> parse_progress("step 00012 (4.0%) | loss: 3.50 | tok/s: 1,200 | elapsed: 5.1s", 9.9).loss
    3.5
    """
    found = protocol.parse_progress(line, elapsed_s)
    return None if found is None else CurvePoint(*found)


def kill_group(pgid: int, grace_s: float | None = None, poll: Callable[[], object] | None = None) -> None:
    """SIGTERM the process group, then SIGKILL whatever is still alive after ``grace_s`` (default ``GRACE_S``,
    read at call time so a test can lengthen it).

    ``poll`` (e.g. ``Popen.poll``) reaps a group member that is our own child: until it is reaped it stays
    in the group as a zombie, and the wait would always last the whole grace period.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + (GRACE_S if grace_s is None else grace_s)
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold a SIGINT (a notebook's "interrupt kernel") until the block ends, then deliver it as before.

    Starting a run is several steps (start the process, record its pid, start its reader): an interrupt between
    two of them would leave a process nobody stops and a row nobody closes. Inside this block the interrupt
    waits; it is raised when the block ends, where the caller can stop the run it now holds. Only the main
    thread receives signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, Any]] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(*held[0])  # the default handler raises KeyboardInterrupt here
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


class Run:
    """A running command. ``wait()`` gives the :class:`RunResult`; ``cancel()`` ends it from another thread.
    With ``stdin=True`` its standard input is a pipe that :meth:`send` writes once (else ``/dev/null``)."""

    def __init__(self, command: str | list[str], cwd: Path | str, log_path: Path | str, *, timeout_s: float,
                 env: Mapping[str, str] | None = None,
                 on_point: Callable[[CurvePoint], None] | None = None,
                 on_start: Callable[[int], None] | None = None,
                 stall_s: float | None = None, secrets: tuple[str, ...] = (),
                 log_cap: int = LOG_CAP, stdin: bool = False,
                 watch: Callable[[], str | None] | None = None, clock: str = "wall", threads: int = 1,
                 on_phase: Callable[[str], None] | None = None) -> None:
        from .scrub import Redactor, redact
        self.log_path = Path(log_path)
        self._log_cap, self._written, self._tail = max(int(log_cap), 2), 0, bytearray()
        self.log_cut = 0  # bytes of output left out of the log (its middle), read after wait()
        # Every secret value the environment withheld, and every credential shape, is masked in the log and
        # the error (the log's tail goes to the agent, the error to the store).
        self._redactor = Redactor(secrets)
        self._redact = lambda text: redact(text, secrets)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s  # on ``clock`` (autoresearch_nb.clock): wall seconds, or CPU seconds per thread
        self.clock, self.threads = clock, threads
        self.meter: Meter | None = None
        self.stall_s = stall_s
        self._watch = watch  # called about once a second: a reason ends the run (the disk floor)
        self._on_point = on_point
        self._on_phase = on_phase  # "train" at the first progress point, then what the run's phase lines name
        self._phase: str | None = None
        self._cancelled = threading.Event()
        self._lines: list[str] = []
        self._tail_lines: list[str] = []
        self._points: list[CurvePoint] = []
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the same interpreter as the loop, so the harness is importable
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self._last_output = self.started  # read by wait() for the stall watchdog; a float store is atomic
        try:
            self.proc = subprocess.Popen(argv, cwd=str(cwd), env=dict(env) if env is not None else scrub_env(),
                                         stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                         stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._log.write(f"could not start {argv!r}: {e}\n".encode())
            self._log.close()
            self.proc = None
            self._start_error = f"could not start command: {e}"
            return
        self._start_error = None
        self.meter = Meter(self.proc.pid, clock, threads, self.started)
        if on_start:
            on_start(self.proc.pid)
        self._reader = threading.Thread(target=self._read, name="autoresearch-run-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def seconds(self) -> float:
        """The run's seconds so far on its budget clock, measured by the loop over its whole process tree."""
        return self.meter.seconds() if self.meter is not None else 0.0

    def _reap(self) -> object:
        """Reap the command if it has exited, with ``wait4`` so the CPU it and every descendant it waited for
        used is known exactly (the cpu clock's last reading); its exit code, or None while it runs."""
        proc = self.proc
        assert proc is not None and self.meter is not None
        if proc.returncode is not None or not hasattr(os, "wait4"):
            return proc.poll()
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: only the exit code is lost
            return proc.poll()
        if pid == 0:
            return None
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.meter.reaped(usage)
        return proc.returncode

    def cancel(self) -> None:
        """End the run now (the result will say ``interrupted``)."""
        self._cancelled.set()

    def send(self, text: str) -> bool:
        """Write ``text`` to the command's standard input (``stdin=True``) and close it; False when the command
        is gone or reads no input."""
        pipe = self.proc.stdin if self.proc is not None else None
        if pipe is None or pipe.closed:
            return False
        try:
            pipe.write(text.encode())
            pipe.close()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        buf = b""
        early = b""  # an unfinished line already parsed as a point
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._last_output = time.monotonic()
            try:
                self._keep(self._redactor.feed(chunk))
            except ValueError:  # closed by wait() after giving up on us; keep draining the pipe
                pass
            buf += chunk
            # Progress lines are redrawn with \r; a line ends at either.
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            if len(buf) > 1 << 20:  # a line with no end: keep memory bounded
                parts.append(buf)
                buf = b""
            for raw in parts:
                self._line(raw.decode("utf-8", "replace"), point=raw != early)
                early = b""
            # A progress line redrawn with a leading \r has no end until the next redraw: parse it now, or
            # the live curve would always be one point behind.
            if buf and buf != early and not self._lines and self._point(buf.decode("utf-8", "replace")):
                early = buf
        if buf:
            self._line(buf.decode("utf-8", "replace"), point=buf != early)
        try:
            self._keep(self._redactor.flush())
            if self.log_cut:
                self._log.write(f"\n[... {self.log_cut} bytes cut: the log keeps its first and last "
                                f"{self._log_cap // 2} bytes ...]\n".encode() + bytes(self._tail))
                self._log.flush()
        except ValueError:
            pass

    def _keep(self, data: bytes) -> None:
        """Write ``data`` to the log while under the head half of the cap; past it keep a tail in memory."""
        head = self._log_cap // 2
        if self._written < head:
            part = data[:head - self._written]
            self._log.write(part)
            self._log.flush()
            self._written += len(part)
            data = data[len(part):]
        if data:
            self._tail += data
            over = len(self._tail) - (self._log_cap - head)
            if over > 0:
                del self._tail[:over]
                self.log_cut += over

    def _line(self, line: str, point: bool = True) -> None:
        if not line.strip():
            return
        line = line[:MAX_LINE]
        # Keep the summary region and a bounded tail: an output flood must not fill memory.
        self._tail_lines.append(line)
        if len(self._tail_lines) > 400:
            del self._tail_lines[:200]
        if protocol.is_summary_start(line):
            self._lines = [line]
            return
        if self._lines:  # inside the summary block: not progress
            if len(self._lines) < 2000:
                self._lines.append(line)
            return
        phase = protocol.parse_phase(line)
        if phase is not None:
            self._enter(phase)
        elif point:
            self._point(line)

    def _enter(self, phase: str) -> None:
        """The run entered ``phase`` (once each, in the order seen): the observer hears it."""
        if phase == self._phase:
            return
        self._phase = phase
        if self._on_phase:
            try:
                self._on_phase(phase)
            except Exception:  # an observer must never break the run
                pass

    def _point(self, line: str) -> bool:
        point = parse_progress(line[:MAX_LINE], time.monotonic() - self.started)
        if point is not None:
            if self._phase is None:
                self._enter("train")  # the first progress line: imports and data loading are over
            self._points.append(point)
            if len(self._points) > MAX_POINTS:
                del self._points[1::2]  # keeps the first and the latest
            if self._on_point:
                try:
                    self._on_point(point)
                except Exception:  # an observer must never break the run
                    pass
        return point is not None

    def wait(self) -> RunResult:
        if self.proc is None:
            return RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=False,
                             error=self._start_error, log_path=str(self.log_path))
        timed_out = interrupted = stalled = False
        stopped: str | None = None
        limit: str | None = None  # which hard limit killed it, in words
        meter = self.meter
        assert meter is not None
        cpu = counts_cpu(self.clock)
        # On the cpu clock the hard timeout counts CPU; the wall keeps a cap (a sleeping run uses no CPU).
        deadline = self.started + self.timeout_s * (WALL_CAP if cpu else 1.0)
        next_watch = self.started + WATCH_EVERY_S
        next_sample = self.started + SAMPLE_EVERY_S
        # On the main thread of a notebook with a live dashboard, the tick lets a Stop click act now.
        with waiting() as tick:
            while True:
                if self._reap() is not None:
                    break
                time.sleep(0.05)
                tick()
                now = time.monotonic()
                if cpu and now >= next_sample:
                    next_sample = now + SAMPLE_EVERY_S
                    meter.sample()
                if self._cancelled.is_set():
                    interrupted = True
                    kill_group(self.proc.pid, poll=self._reap)
                elif now >= deadline or (cpu and meter.seconds() >= self.timeout_s):
                    timed_out = True
                    limit = (f"{self.timeout_s:g} s" if not cpu else
                             f"{self.timeout_s:g} CPU seconds per thread" if now < deadline else
                             f"{self.timeout_s * WALL_CAP:g} s of wall time, {WALL_CAP:g}x its CPU limit")
                    kill_group(self.proc.pid, poll=self._reap)
                elif self.stall_s and now - self._last_output >= self.stall_s:
                    timed_out = stalled = True
                    kill_group(self.proc.pid, poll=self._reap)
                elif self._watch is not None and stopped is None and now >= next_watch:
                    next_watch = time.monotonic() + WATCH_EVERY_S
                    try:
                        stopped = self._watch()
                    except Exception as e:  # a broken check must not end a run; say so in its error
                        stopped = None
                        self._watch = None
                        self._tail_lines.append(f"(the loop's check during the run failed: {e})")
                    if stopped:
                        kill_group(self.proc.pid, poll=self._reap)
        # A second call (a second Ctrl-C inside the first kill) finds the process already gone: a cancel
        # asked for still makes it an interrupted run, not a crash with the signal's exit code.
        interrupted = interrupted or (self._cancelled.is_set() and not timed_out)
        wall = time.monotonic() - self.started
        if meter.ended is None:  # reaped without wait4 (another platform, or by someone else)
            meter.ended = time.monotonic()
        if cpu:
            meter.sample()  # children still alive in the group are counted before they go
        # The main process is gone; children that kept running (or hold the pipe) go too.
        kill_group(self.proc.pid, grace_s=0.5)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # the reader is gone: nothing to flush
                pass
        self._reader.join(timeout=5)
        self._log.close()  # a reader still blocked (a child that left the group holds the pipe) stops writing
        if not self._reader.is_alive() and self.proc.stdout:
            self.proc.stdout.close()  # not left to the garbage collector: an overnight run starts hundreds
        code = self.proc.returncode
        summary = {k: self._redact(v) if isinstance(v, str) else v
                   for k, v in protocol.parse_summary(self._lines).items()}
        failed = any(protocol.is_fail(line) for line in self._tail_lines)
        error = None
        if stopped:
            error = f"stopped by the loop: {stopped}"
        elif stalled:
            error = stall_reason(self.stall_s or 0.0)
        elif timed_out:
            error = f"killed at the hard timeout ({limit or f'{self.timeout_s:g} s'})"
        elif interrupted:
            error = "interrupted"
        elif code != 0 or failed:
            error = protocol.last_error(self._tail_lines) or (f"exit code {code}" if code else "FAIL")
        return RunResult(exit_code=code, timed_out=timed_out, wall_s=wall, summary=summary, failed=failed or bool(stopped),
                         error=self._redact(error) if error else error, log_path=str(self.log_path), interrupted=interrupted,
                         stalled=stalled, points=tuple(self._points), log_cut=self.log_cut,
                         clock=self.clock, run_seconds=round(meter.seconds(), 2))


def stall_reason(stall_s: float) -> str:
    """The recorded reason of a run the watchdog killed: ``"stalled: no output for 20 min"``."""
    amount = f"{stall_s / 60:g} min" if stall_s >= 60 else f"{stall_s:g} s"
    return f"stalled: no output for {amount}"


def run_command(command: str | list[str], cwd: Path | str, log_path: Path | str, *, timeout_s: float,
                env: Mapping[str, str] | None = None,
                on_point: Callable[[CurvePoint], None] | None = None,
                stall_s: float | None = None) -> RunResult:
    """Run ``command`` to the end (or the timeout) and return what happened.

    >>> r = run_command("python -c 'print(\\"---\\"); print(\\"score: 1.5\\")'", ".", "/tmp/x.log", timeout_s=30)
    >>> r.summary["score"]
    1.5
    """
    return Run(command, cwd, log_path, timeout_s=timeout_s, env=env, on_point=on_point, stall_s=stall_s).wait()


def log_tail(path: str | Path | None, lines: int = 60) -> str:
    """The last lines of a log (progress redraws collapsed), for a crashed run's context."""
    if not path or not Path(path).exists():
        return ""
    data = Path(path).read_bytes()[-200_000:].decode("utf-8", "replace")
    out = [seg.split("\r")[-1] for seg in data.rstrip("\n").split("\n")]
    return "\n".join(out[-lines:])
