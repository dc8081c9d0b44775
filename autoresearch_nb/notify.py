"""Overnight notifications: the ``notify`` setting's command, run when the loop finishes or crashes, or when a
run stalls. An event listener like any other (the loop never calls it directly)::

    >>> notifier = Notifier(loop.config, loop.tag)      # doctest: +SKIP
    >>> loop.subscribe(notifier)                        # doctest: +SKIP

The command is split like a shell would (no shell runs it, so an experiment's description cannot inject
anything) and gets the event three ways: one line on stdin; ``AUTORESEARCH_NOTIFY_EVENT`` (``finished``,
``crashed``, ``stopped`` or ``stalled``), ``_TAG``, ``_MESSAGE`` and ``_EXPERIMENT`` in its environment; and
``{event}``, ``{tag}``, ``{message}`` replaced in its arguments. E.g. ``notify = "curl -s -d @- ntfy.sh/my-runs"``.
Its environment is scrubbed of secret-looking variables like a run's (``env_allow`` lets one through), and no
secret is ever part of the event. It runs in the background with a time limit; a failing command is logged and
never stops the loop.
"""
from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import threading

from .config import Config
from .events import Event, EventKind
from .records import Status
from .runner import kill_group, scrub_env

log = logging.getLogger("autoresearch_nb")

MAX_MESSAGE = 500


def what_happened(event: Event) -> str | None:
    """The notification an event deserves (``finished``, ``crashed``, ``stopped``, ``stalled``), or None."""
    if event.kind == EventKind.LOOP_FINISHED:
        if not event.error:
            return "finished"
        return "stopped" if event.message.startswith("KeyboardInterrupt") else "crashed"
    exp = event.experiment
    if event.kind == EventKind.RUN_FINISHED and exp is not None and exp.status == Status.TIMEOUT \
            and exp.reason.startswith("stalled"):
        return "stalled"
    return None


class Notifier:
    """Run ``config.notify`` for the events that matter overnight. Call :meth:`wait` before the process exits."""

    def __init__(self, config: Config, tag: str = "", *, timeout_s: float = 60.0) -> None:
        self.config = config
        self.tag = tag
        self.timeout_s = timeout_s
        self._threads: list[threading.Thread] = []
        self._ran = 0
        self._best: tuple[int, float] | None = None

    def __call__(self, event: Event) -> None:
        exp = event.experiment
        if event.kind == EventKind.DECIDED and exp is not None:
            self._ran += exp.status.ran
            if exp.status == Status.KEEP and exp.metric is not None and \
                    (self._best is None or self.config.better(exp.metric, self._best[1])):
                self._best = (exp.number, exp.metric)
        what = what_happened(event)
        if what is None or not self.config.notify:
            return
        self.send(what, self._message(what, event), exp.number if exp is not None else None)

    def _message(self, what: str, event: Event) -> str:
        exp = event.experiment
        if what == "stalled" and exp is not None:
            detail = f"experiment #{exp.number} ({exp.description}) {exp.reason}"
        else:
            detail = event.message or what
            best = (f", best {self.config.metric} {self._best[1]:.6f} (#{self._best[0]})" if self._best else "")
            detail += f"; {self._ran} experiments ran in this session{best}"
        return " ".join(f"autoresearch run {self.tag}: {what}: {detail}".split())[:MAX_MESSAGE]

    def send(self, what: str, message: str, experiment: int | None = None) -> None:
        """Run the command for one event in the background."""
        thread = threading.Thread(target=self._run, args=(what, message, experiment),
                                  name="autoresearch-notify", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, what: str, message: str, experiment: int | None) -> None:
        values = {"{event}": what, "{tag}": self.tag, "{message}": message}
        argv = []
        for arg in shlex.split(self.config.notify or ""):
            for key, value in values.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = scrub_env(allow=self.config.env_allow, extra={
            "AUTORESEARCH_NOTIFY_EVENT": what, "AUTORESEARCH_NOTIFY_TAG": self.tag,
            "AUTORESEARCH_NOTIFY_MESSAGE": message,
            "AUTORESEARCH_NOTIFY_EXPERIMENT": "" if experiment is None else str(experiment)})
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env=env, start_new_session=True)
        except OSError as e:
            log.warning("notify command %r could not start: %s", argv[:1], e)
            return
        try:
            _, err = proc.communicate((message + "\n").encode(), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, poll=proc.poll)
            proc.communicate()
            log.warning("notify command %r killed after %g s", argv[:1], self.timeout_s)
            return
        if proc.returncode != 0:
            log.warning("notify command %r exited %s: %s", argv[:1], proc.returncode,
                        err.decode("utf-8", "replace").strip()[-300:])

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the commands still running (the CLI calls this before it exits)."""
        for thread in list(self._threads):
            thread.join(self.timeout_s + 5 if timeout_s is None else timeout_s)


__all__ = ["Notifier", "what_happened"]
