"""kill -9 the loop at randomised points, reopen after each kill, and count what survived.

    python benchmarks/fault_campaign.py [--kills 50] [--seed 0]

A throwaway repository with a fast target (``score = (X - 1) ** 2``, a run takes well under a second) and a long
queue. Each round starts ``autoresearch-nb run`` and kills the loop process (SIGKILL, not its runs) either
at a pause point (:mod:`autoresearch_nb.faults`: the row saved as running, the run started but its pid not
saved, right after the commit, before the decided row, inside the results.tsv write) or after a random delay; then reopens the run
(``Loop.open`` + ``close``: recovery) and checks. At the end it prints:

- kills survived: reopens that worked, with no row left ``running`` or ``proposed``;
- rows lost: experiment numbers missing from the store (gaps), or fewer rows than the last reopen saw;
- orphans left: processes still carrying the run's ``AUTORESEARCH_RUN`` marker after a reopen;
- user files changed: the checkout (HEAD, status, every file's bytes) against its state before the campaign.

Goal: N/N, 0, 0, 0.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POINTS = ("saved-running", "started", "commit", "decide", "results-tsv")
# A run that outlives its loop: when its output pipe is gone it lingers (as a process of a careless target would)
# instead of dying of the broken pipe, so a recovery that missed it shows up as an orphan.
TARGET = ("import time\nX = 3.0\ntime.sleep(2.0)\ntry:\n    print('step 1 | loss: 0.5')\n    print('---')\n"
          "    print(f'score: {(X - 1) ** 2:.6f}')\nexcept OSError:\n    time.sleep(30)\n")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, moves: int) -> None:
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "c@e"], ["config", "user.name", "c"]):
        git(root, *args)
    (root / "train.py").write_text(TARGET)
    (root / "notes.md").write_text("the user's notes\n")
    entries = []
    for i in range(moves):  # whole files, so an experiment a kill interrupted does not break the next entry
        content = TARGET.replace("X = 3.0", f"X = {3.0 - 0.01 * (i + 1):.2f}")
        entries.append(f'[[experiment]]\ndescription = "step {i + 1}"\ncontent = """{content}"""\n')
    (root / "queue.toml").write_text("".join(entries))
    git(root, "add", "train.py", "notes.md")
    git(root, "commit", "-qm", "init")
    (root / "draft.txt").write_text("untracked, the user's\n")  # an untracked file must survive too


def checkout_state(root: Path) -> str:
    digest = hashlib.sha256()
    digest.update(git(root, "rev-parse", "main").encode())
    digest.update(git(root, "status", "--porcelain", "--untracked-files=all").encode())
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".git", ".autoresearch") or not path.is_file():
            continue
        digest.update(str(rel).encode() + path.read_bytes())
    return digest.hexdigest()


def marked(tag: str, under: Path) -> list[int]:
    """Processes of this campaign's runs (their marker, and a working directory under ``under``: another
    session's run with the same tag is not ours)."""
    import psutil
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("AUTORESEARCH_RUN", "").startswith(f"{tag}/") and \
                    proc.cwd().startswith(str(under) + os.sep):
                out.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return out


def start(root: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "c", "--repo", str(root),
                             "--agent", "queue", "--metric", "score", "--time-budget", "5", "--noise-repeats", "1",
                             "--noise-k", "0", "--timeout", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def kill_at(proc: subprocess.Popen, point: str | None, delay: float, limit_s: float = 30.0) -> str:
    """SIGKILL the loop when it reports ``point`` (or after ``delay`` s); returns where it was killed."""
    hit = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if point and line.startswith(f"fault-pause {point}"):
                hit.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    if point:
        if not hit.wait(limit_s):
            proc.kill()
            return "never reached"
    else:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return point or f"{delay:.2f}s"


def reopen(root: Path) -> tuple[bool, list, str]:
    """Open and close the run in a fresh process (recovery); its rows after that, and what went wrong. It runs
    with the default cache folder, not the campaign's XDG_CACHE_HOME (a notebook started elsewhere): recovery
    must find the runs anyway."""
    code = ("import json, sys\nfrom autoresearch_nb import Loop\n"
            "loop = Loop.open(sys.argv[1], tag='c', agent='queue', metric='score')\n"
            "print(json.dumps([[e.number, e.status.value] for e in loop.experiments]))\nloop.close()\n")
    r = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return False, [], r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    import json
    return True, json.loads(r.stdout.strip().splitlines()[-1]), ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    survived = lost = orphans = 0
    seen_rows = 0
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fault-campaign-") as tmp:
        root = Path(tmp) / "research"
        make_repo(root, moves=4 * args.kills + 10)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "XDG_CACHE_HOME": str(Path(tmp) / "cache"), "AUTORESEARCH_FAULT_PAUSE_S": "30"}
        before = checkout_state(root)
        t0 = time.monotonic()
        for i in range(args.kills):
            point = rng.choice(POINTS + (None,))  # one round in six: a random moment instead
            round_env = {**env, "AUTORESEARCH_FAULT_PAUSE": point} if point else env
            if point == "results-tsv":  # results.tsv is rewritten (not appended to) when it is missing
                for tsv in root.glob(".autoresearch/results/c/results.tsv"):
                    tsv.unlink()
            where = kill_at(start(root, round_env), point, rng.uniform(0.5, 4.0))
            ok, rows, why = reopen(root)
            left = marked("c", Path(tmp))
            numbers = [n for n, _ in rows]
            open_rows = [n for n, s in rows if s in ("running", "proposed")]
            gaps = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
            if ok and not open_rows:
                survived += 1
            else:
                problems.append(f"kill {i + 1} at {where}: {why or f'rows left open {open_rows}'}")
            if gaps or len(rows) < seen_rows:
                lost += len(gaps) + max(0, seen_rows - len(rows))
                problems.append(f"kill {i + 1} at {where}: rows missing {gaps}")
            seen_rows = max(seen_rows, len(rows))
            if left:
                orphans += len(left)
                problems.append(f"kill {i + 1} at {where}: {len(left)} processes of the run still alive")
                for pid in left:  # so one leak is counted once
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            print(f"kill {i + 1:3d}/{args.kills} at {where:>13}: reopen {'ok' if ok else 'FAILED'}, "
                  f"{len(rows)} rows", flush=True)
        changed = checkout_state(root) != before
        elapsed = time.monotonic() - t0
    for line in problems:
        print("  " + line)
    print(f"kills survived: {survived}/{args.kills}")
    print(f"rows lost: {lost}")
    print(f"orphans left: {orphans}")
    print(f"user files changed: {int(changed)}")
    print(f"({elapsed:.0f} s, {seen_rows} experiments recorded)")
    return 0 if (survived, lost, orphans, changed) == (args.kills, 0, 0, False) else 1


if __name__ == "__main__":
    raise SystemExit(main())
