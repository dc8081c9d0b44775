# python -m pytest tests/test_notify.py -q
"""The notify command: a real command writing a file, run for finish, crash and stall, never for the rest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch_nb.config import Config
from autoresearch_nb.events import Event, EventKind
from autoresearch_nb.notify import Notifier
from autoresearch_nb.records import Experiment, Status
from autoresearch_nb.runner import stall_reason

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import make_repo, queue, run_queue, target  # noqa: E402

# The hook a user would write: records its argv, the event variables and stdin as one JSON line.
HOOK = """\
import json, os, sys
out = sys.argv[-1]
env = {k: v for k, v in os.environ.items() if k.startswith("AUTORESEARCH_NOTIFY_") or "KEY" in k}
with open(out, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:-1], "env": env, "stdin": sys.stdin.read()}) + "\\n")
"""
QUEUE = queue(("3.0", "2.0"), description="X to {x} $(touch pwned)")


@pytest.fixture()
def hook(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    out = tmp_path / "notified.jsonl"
    return f"python {script} {{event}} {{tag}} {{message}} {out}", out


def calls(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-" + "secret-value"}
    return run_queue(root, "a", *args, env=env, cwd=root)


def test_the_cli_notifies_once_when_the_loop_finishes(tmp_path: Path, hook: tuple[str, Path]) -> None:
    command, out = hook
    root = make_repo(tmp_path / "r", {"train.py": target(), "queue.toml": QUEUE})
    r = cli(root, "--notify", command)
    assert r.returncode == 0, r.stderr
    [call] = calls(out)
    assert call["argv"][:2] == ["finished", "a"]
    assert call["env"]["AUTORESEARCH_NOTIFY_EVENT"] == "finished"
    assert call["env"]["AUTORESEARCH_NOTIFY_TAG"] == "a"
    message = call["env"]["AUTORESEARCH_NOTIFY_MESSAGE"]
    assert call["stdin"] == message + "\n" and call["argv"][2] == message
    assert "2 experiments ran" in message and "best score 1.000000 (#1)" in message
    assert "sk-ant-" + "secret-value" not in out.read_text()  # the key is neither in its environment nor the event
    assert not (root / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_the_cli_notifies_a_crash_of_the_loop(tmp_path: Path, hook: tuple[str, Path]) -> None:
    command, out = hook
    root = make_repo(tmp_path / "r", {"train.py": target(), "queue.toml": QUEUE})
    r = cli(root, "--notify", command, "--setup", "python -c 'import sys; sys.exit(3)'")
    assert r.returncode == 1
    [call] = calls(out)
    assert call["argv"][0] == "crashed" and "setup" in call["env"]["AUTORESEARCH_NOTIFY_MESSAGE"]


def stalled(number: int = 4) -> Experiment:
    return Experiment(number=number, tag="a", status=Status.TIMEOUT, description="DEPTH 8 -> 12",
                      reason=stall_reason(1200))


def test_a_stalled_run_is_notified_with_its_experiment(tmp_path: Path, hook: tuple[str, Path]) -> None:
    command, out = hook
    notifier = Notifier(Config(notify=command), "a")
    notifier(Event(EventKind.RUN_FINISHED, stalled()))
    notifier.wait()
    [call] = calls(out)
    assert call["argv"][0] == "stalled" and call["env"]["AUTORESEARCH_NOTIFY_EXPERIMENT"] == "4"
    assert "stalled: no output for 20 min" in call["stdin"]


def test_ordinary_events_are_not_notified(tmp_path: Path, hook: tuple[str, Path]) -> None:
    command, out = hook
    notifier = Notifier(Config(notify=command), "a")
    timeout = stalled().with_(reason="killed at the hard timeout (60 s)")
    for event in (Event(EventKind.RUN_FINISHED, timeout), Event(EventKind.DECIDED, stalled().with_(status=Status.KEEP)),
                  Event(EventKind.RUN_STARTED, stalled()), Event(EventKind.MESSAGE, message="hello")):
        notifier(event)
    notifier.wait()
    assert calls(out) == []


def test_without_the_setting_nothing_runs(tmp_path: Path, hook: tuple[str, Path]) -> None:
    _, out = hook
    notifier = Notifier(Config(), "a")
    notifier(Event(EventKind.LOOP_FINISHED, message="done"))
    notifier.wait()
    assert calls(out) == []


def test_a_hanging_or_missing_command_never_raises(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hang = tmp_path / "hang.py"
    hang.write_text(f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n")
    notifier = Notifier(Config(notify=f"python {hang}"), "a", timeout_s=1)
    notifier(Event(EventKind.LOOP_FINISHED, message="done"))
    notifier.wait()
    pid = int(pidfile.read_text())
    import psutil
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    missing = Notifier(Config(notify=str(tmp_path / "no-such-command")), "a")
    missing(Event(EventKind.LOOP_FINISHED, error=True, message="RuntimeError: x"))
    missing.wait()
