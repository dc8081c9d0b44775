"""The number the loop decides on comes from the loop, not from the experiment: verification and the guard.

A run's verification is begun as the run starts (:meth:`Verification.begin` gives a :class:`Pending`) and
applied to its result after a clean end:

* the **verify** command (a setting): in a clean copy of the commit's files (taken before the run, so
  nothing the run left there is imported), with the run's environment and under the run's
  sandbox, after the run has ended; its ``---`` summary gives the metric the loop decides on. The run's own
  printed number becomes a cross-check: beyond ``verify_tolerance`` the row is ``tampered``, with both numbers
  in its reason. A verify command that gives no number makes the row ``unverified`` (never kept), with its
  error as the reason. ``verify = "model"`` is the built-in verifier of the repository's ``train.py``: a fresh
  ``python -I`` process of this package (:mod:`autoresearch_nb.verifier`), started outside the run directory
  and in its own sandbox (:func:`confined`), that re-scores the model the harness exported
  (``H.export(model)``) on the fixed evaluation bytes. It starts with the run (``--wait``: it imports torch and
  reads the corpus while the run trains) and is told to go when the run has ended, so the loop waits only for
  the load and the evaluation. The models of the best experiment and the last ``keep_artifacts`` are kept.
* the **guard** command (a setting): must exit 0 for a keep (the project's tests, "the optimised function still
  returns the right answer"); otherwise the row is ``guard_failed`` with the tail of its output.

Both commands run in the run's temp folder, in a copy of the commit's tracked files as committed (kept before
the run, out of its reach); the files the run created are moved into a separate folder named by
``AUTORESEARCH_OUTPUTS``: data to read, never on the command's import path. A run that rewrites a tracked file
(the verify script itself) is still caught as a ``violation``. See the README's "Verification" section.

>>> v = Verification(metric="score", command="python check.py", guard=None)   # doctest: +SKIP
>>> pending = v.begin(run_dir, env, log_path)            # as the run starts  # doctest: +SKIP
>>> result = pending(run_result); pending.close()        # after it           # doctest: +SKIP
"""
from __future__ import annotations

import math
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from . import environ

from .layout import ARTIFACTS, RunPaths
from .rundir import check_tree, keep_pristine, move_outputs, tmp_for
from .records import RunResult, Status
from .runner import Run, log_tail, run_command

if TYPE_CHECKING:
    from .config import Config

ENV_EXPORT = "AUTORESEARCH_EXPORT"  # = harness.export.ENV_EXPORT (not imported: the harness imports torch)
# A verify or guard command runs in a clean copy of the commit; the files the run created are in this folder.
ENV_OUTPUTS = "AUTORESEARCH_OUTPUTS"
CHECK_FOLDER = "autoresearch-check"  # in the run's temp folder: the clean trees and the outputs
GO = "go"                # = verifier.GO: the word a warm verifier waits for
MODEL = "model"          # verify = "model": the built-in verifier of the harness's exported model
AUTO = "auto"            # the default: "model" when the editable file is a harness train.py, else off
OFF = ("off", "none", "false", "")
VERIFIER_FACTS = ("holdout_bpb", "holdout_bytes", "holdout", "holdout_gap", "verifier", "verify_seconds",
                  "training_seconds", "graph_ops", "causal_rows", "causal_positions", "causal_worst")
VERIFY_TIMEOUT_S = 600.0  # a verify or guard command's own hard limit (the run's budget does not cover it)
WARM_LIMIT_S = 7 * 86400.0  # a warm verifier waits as long as its run lasts; Pending.close ends it
# Wraps a command in the sandbox: (argv, its private working directory, the folders it must read) -> argv.
Confine = Callable[[list[str], Path, tuple[Path, ...]], list[str]]
GUARD_TAIL_LINES = 20


def resolve(config: "Config", repo_root: str | Path) -> str | None:
    """The verify command a run uses: ``config.verify``, with ``auto`` decided once from the editable file as
    it is when the loop opens (so an agent cannot turn verification off by editing it)."""
    value = (config.verify or "").strip()
    if value.lower() in OFF:
        return None
    if value.lower() != AUTO:
        return value
    return MODEL if uses_harness(config, repo_root) and config.metric == "val_bpb" else None


def budget_clock(config: "Config", repo_root: str | Path) -> str:
    """The budget clock a loop on ``repo_root`` uses (:mod:`.clock`), decided once as it opens: the editable file
    as it is then, the device class guessed without torch."""
    from . import environ
    from .clock import resolve
    from .provenance import device_class
    harness = uses_harness(config, repo_root)
    return resolve(config.budget_clock, device_class(environ.snapshot()), harness,
                   harness and reports_work(config, repo_root))


def reports_work(config: "Config", repo_root: str | Path) -> bool:
    """Whether the editable file, as the loop opens, reports its model work to the harness (``H.work(``): what
    the flops clock counts."""
    try:
        return "H.work(" in (Path(repo_root) / config.editable).read_text(errors="replace")
    except OSError:
        return False


def uses_harness(config: "Config", repo_root: str | Path) -> bool:
    """Whether the editable file, as the loop opens, is a harness train.py (it exports its model for the verifier
    and trains on the harness's clock)."""
    try:
        text = (Path(repo_root) / config.editable).read_text(errors="replace")
    except OSError:
        return False
    return "autoresearch_nb" in text and "harness" in text and "H.export(" in text


def close_enough(claimed: float, verified: float, tolerance: float) -> bool:
    """True when the run's printed number agrees with the verified one: within ``tolerance`` relative to the
    verified value (absolute for values under 1 in magnitude)."""
    return abs(claimed - verified) <= tolerance * max(abs(verified), 1.0)


def _number(summary: Mapping[str, object], key: str) -> float | None:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    return float(value)


def model_command(artifact_dir: str | Path, budget_s: float, budget_tolerance: float,
                  not_before: float | None = None, pins: str | None = None, wait: bool = False,
                  clock: str | None = None) -> list[str]:
    """The built-in verifier's command: this package's own copy (never the run directory's), isolated mode.
    ``pins``: the session's corpus and tokenizer hashes (provenance.pin); ``wait``: started with the run, it
    warms up and verifies when told (:class:`Pending`)."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    boot = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from autoresearch_nb.verifier import main; "
            "raise SystemExit(main(sys.argv[1:]))")
    argv = [sys.executable, "-I", "-c", boot, package_parent, "--artifact-dir", str(Path(artifact_dir).resolve()),
            "--budget", f"{budget_s:g}", "--budget-tolerance", f"{budget_tolerance:g}"]
    argv += ["--pins", pins] if pins else []  # the corpus and tokenizer hashes of the session (provenance.pin)
    argv += ["--clock", clock] if clock else []  # the session's budget clock: the harness must have counted on it
    argv += ["--not-before", f"{not_before:.3f}"] if not_before is not None else []
    return argv + (["--wait"] if wait else [])


def verifier_reads(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """What the model verifier reads besides Python, this package and the run's export folder: the prepared
    dataset (corpus, tokenizers). The one place for another folder runs cannot read but the verifier must
    (a holdout split kept outside the dataset)."""
    from .sandbox import dataset_cache, holdout_cache

    values = environ.snapshot() if env is None else dict(env)
    return (dataset_cache(values), holdout_cache(values))


def confined(mode: str, *, repo: str | Path | None = None, env: Mapping[str, str] | None = None,
             memory_mb: int | None = None, file_mb: int | None = None) -> Confine:
    """A :data:`Confine` putting the model verifier in its own sandbox (:func:`.sandbox.reader_policy`):
    it reads :func:`verifier_reads` and its export folder, writes only a private temp, no network."""
    from . import sandbox

    def confine(argv: list[str], cwd: Path, reads: tuple[Path, ...]) -> list[str]:
        read = tuple(str(p) for p in (*reads, *verifier_reads(env)))
        return sandbox.wrap(argv, sandbox.reader_policy(cwd, read, repo=repo, mode=mode, memory_mb=memory_mb,
                                                        file_mb=file_mb if file_mb else sandbox.DEFAULT_FILE_MB))
    return confine


def prepare_command(editable: str | Path) -> list[str]:
    """A trusted process of this package (isolated mode) that prepares the corpus and the tokenizer
    ``editable``'s ``TOKENIZER`` line picks (``harness.tokenizer.prepare_tokenizer``: a cached file whose hash
    no trusted process recorded is trained again), so the verifier never has to use a tokenizer a run wrote; and
    tokenizes the train split into its shards, so the session's first run does not spend its time limit on that."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    boot = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from autoresearch_nb import harness as H; "
            "from autoresearch_nb.harness.prepare import tokenizer_of; "
            "from autoresearch_nb.harness.tokenizer import prepare_tokenizer; name = tokenizer_of(sys.argv[1]); "
            "corpus = H.load_corpus(); tok = prepare_tokenizer(corpus, name); "
            "n = len(H.token_stream(corpus, tok, 'train')); "
            "print('prepared the tokenizer', name, 'and the train split,', n, 'tokens')")
    return [sys.executable, "-I", "-c", boot, package_parent, str(Path(editable).resolve())]


def artifact_dir(repo_root: str | Path, tag: str, number: int | str) -> Path:
    """Where run ``number`` exports its model (``AUTORESEARCH_EXPORT``): beside the session's run directories,
    outside the checkout (so the export is no change to the repository, and the sandbox, which never lets a
    run write into the checkout or ``.autoresearch/``, lets it write there)."""
    return RunPaths(Path(repo_root).resolve(), tag).artifact(number)


def artifacts_root(run_dir: str | Path) -> Path:
    """The folder holding a session's exported models, beside its run directory ``run_dir``."""
    return Path(run_dir).parent / ARTIFACTS


def prune(folder: Path, keep: int, min_age_s: float = 0.0, protect: Collection[str] = ()) -> list[Path]:
    """Delete all but the ``keep`` newest experiment folders of exported models under ``folder``, and the
    ``protect``ed ones (the best experiment's, by name); folders younger than ``min_age_s`` stay too (a
    parallel worker's verifier may be reading one)."""
    try:
        runs = sorted((p for p in folder.iterdir() if p.is_dir() and p.name not in protect),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        now = time.time()
        old = [p for p in runs[keep:] if now - p.stat().st_mtime >= min_age_s]
    except OSError:
        return []
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


@dataclass(frozen=True)
class Verification:
    """What one loop verifies after each clean run (see the module docstring). Picklable, so a remote
    executor can carry it."""

    metric: str
    command: str | None = None       # a verify command, MODEL, or None (the run's own number stands)
    guard: str | None = None
    tolerance: float = 0.005
    budget_s: float = 300.0
    budget_tolerance: float = 0.1
    timeout_s: float = VERIFY_TIMEOUT_S
    keep_artifacts: int = 3          # exported models kept per run (the newest), so a night of runs fits on disk
    pins: str | None = None          # provenance.pin's JSON, set at the session's first experiment (MODEL only)
    protect: tuple[str, ...] = ()    # artifact folders never pruned: the best experiment's (the loop says which)
    run_timeout_s: float = 600.0     # a run's hard limit: an export folder younger than it + timeout_s may be in use
    clock: str | None = None         # the session's budget clock (autoresearch_nb.clock), told to the model verifier

    @classmethod
    def of(cls, config: "Config", repo_root: str | Path) -> "Verification | None":
        """The verification a config asks for, or None when neither verify nor guard is set."""
        command = resolve(config, repo_root)
        guard = (config.guard or "").strip() or None
        if command is None and guard is None:
            return None
        return cls(metric=config.metric, command=command, guard=guard, tolerance=float(config.verify_tolerance),
                   budget_s=float(config.time_budget_s), budget_tolerance=float(config.budget_tolerance),
                   keep_artifacts=int(config.keep_artifacts), run_timeout_s=float(config.hard_timeout_s))

    def begin(self, run_dir: str | Path, env: Mapping[str, str] | None, log_path: str | Path,
              confine: Confine | None = None, confine_command: Callable[[str], list[str]] | None = None,
              not_before: float | None = None) -> "Pending":
        """The verification of one run, begun as the run starts (the model verifier warms up meanwhile).
        ``confine`` puts the model verifier in its sandbox, ``confine_command`` the verify and guard commands
        in the run's; ``not_before``: when the run started (default: now)."""
        return Pending(self, run_dir, env, log_path, confine, confine_command, not_before)

    def verified(self, result: RunResult, checked: RunResult, log: Path) -> RunResult:
        """``result`` judged by the verifier's own run ``checked`` (its summary, logged at ``log``)."""
        claimed = _number(result.summary, self.metric)
        verified = _number(checked.summary, self.metric)
        # Facts only the verifier may state (a run can print anything): never kept from the run's own summary,
        # even when the verifier does not give them (no holdout on an old corpus).
        summary = {k: v for k, v in result.summary.items() if k != self.metric and k not in VERIFIER_FACTS}
        if checked.summary.get("verdict") == Status.OVER_BUDGET.value:
            return replace(result, summary=summary, claimed=claimed, flag=Status.OVER_BUDGET,
                           flag_reason=str(checked.summary.get("reason") or "trained past the time budget"))
        if verified is None or checked.exit_code != 0 or checked.timed_out:
            why = checked.summary.get("reason") or checked.error or f"no {self.metric!r} in its summary"
            tail = log_tail(log, 5)
            return replace(result, summary=summary, claimed=claimed, flag=Status.UNVERIFIED,
                           flag_reason=f"verification failed: {why} (see {log})" + (f":\n{tail}" if tail else ""))
        summary.update(checked.summary)  # the verifier's facts (training time, holdout, versions) win
        summary[self.metric] = verified
        out = replace(result, summary=summary, verified=True, claimed=claimed)
        if claimed is not None and not close_enough(claimed, verified, self.tolerance):
            return replace(out, flag=Status.TAMPERED,
                           flag_reason=f"the run printed {self.metric} = {claimed:.6g}, the verifier measured "
                                       f"{verified:.6g} (tolerance {self.tolerance:g})")
        return out

    def guarded(self, result: RunResult, checked: RunResult, log: Path) -> RunResult:
        """``result`` refused (``guard_failed``) unless the guard's run ``checked`` passed."""
        if checked.exit_code == 0 and not checked.timed_out:
            return result
        how = checked.error or f"exit code {checked.exit_code}"
        tail = log_tail(log, GUARD_TAIL_LINES)
        return replace(result, flag=Status.GUARD_FAILED,
                       flag_reason=f"guard {shlex.quote(self.guard or '')} failed ({how}):\n{tail}")


class Pending:
    """One run's verification, begun when the run starts. With ``verify = "model"`` the verifier process
    starts at once (``--wait``): it imports torch and reads the corpus while the run imports and trains, then
    blocks on its standard input; calling the object with the run's result tells it to go (or, for a run that
    did not end cleanly, :meth:`close` ends it unused). The process is still fresh per run, ``python -I``
    from the installed package, outside the run directory, and never reads the artifact before the run ends.

    >>> pending = verification.begin(run_dir, env, log_path)    # as the run starts   # doctest: +SKIP
    >>> result = pending(run.wait()); pending.close()                                  # doctest: +SKIP
    """

    def __init__(self, verification: Verification, run_dir: str | Path, env: Mapping[str, str] | None,
                 log_path: str | Path, confine: Confine | None = None,
                 confine_command: Callable[[str], list[str]] | None = None, not_before: float | None = None) -> None:
        self.verification = verification
        self.run_dir, self.env = Path(run_dir), env
        self.log = Path(log_path)
        self.confine_command = confine_command
        self.folder = (env or {}).get(ENV_EXPORT, "") if verification.command == MODEL else ""
        self.process: Run | None = None
        self.cwd: Path | None = None
        # verify and guard commands run in a copy of the commit's files taken now, before the run can touch them
        has_command = verification.guard is not None or verification.command not in (None, MODEL)
        self.pristine: Path | None = keep_pristine(self.run_dir) if has_command else None
        self.outputs: Path | None = None
        if verification.command == MODEL and self.folder:
            # cwd outside the run directory, so nothing the run leaves there is imported or read by accident
            self.cwd = Path(tempfile.mkdtemp(prefix="autoresearch-verify-"))
            started = time.time() if not_before is None else not_before
            # an artifact older than the run is a leftover (a repeat, a resume), not this run's
            argv = model_command(self.folder, verification.budget_s, verification.budget_tolerance, started - 1.0,
                                 pins=verification.pins, wait=True, clock=verification.clock)
            if confine is not None:
                # made now: the sandbox can only grant a folder that exists when the verifier starts
                Path(self.folder).mkdir(parents=True, exist_ok=True)
                argv = confine(argv, self.cwd, (Path(self.folder),))
            self.process = Run(argv, self.cwd, self.log.with_suffix(".verify.log"), timeout_s=WARM_LIMIT_S,
                               env=env, stdin=True)

    def __call__(self, result: RunResult) -> RunResult:
        """``result`` verified and guarded; a run that crashed, timed out or was stopped is left as it is."""
        check = self.verification
        if result.interrupted or result.timed_out or result.exit_code != 0 or result.failed:
            self.close()
            return result
        if check.command is not None:
            log = self.log.with_suffix(".verify.log")
            checked = self._model() if check.command == MODEL else self._command(check.command, log, "verify")
            result = check.verified(result, checked, log)
        if result.flag is None and check.guard is not None:
            log = self.log.with_suffix(".guard.log")
            result = check.guarded(result, self._command(check.guard, log, "guard"), log)
        return result

    def _model(self) -> RunResult:
        process = self.process
        if process is None:
            return RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=True,
                             error=f"the run had no export folder ({ENV_EXPORT})",
                             log_path=str(self.log.with_suffix(".verify.log")))
        process.send(GO + "\n")
        limit = self.verification.timeout_s
        timer = threading.Timer(limit, process.cancel)  # the verifier's own limit starts now, not with the run
        timer.start()
        try:
            checked = process.wait()
        finally:
            timer.cancel()
            self.close()
        if checked.interrupted:
            checked = replace(checked, timed_out=True, error=f"the verifier took longer than {limit:g} s")
        check = self.verification
        prune(Path(self.folder).parent, check.keep_artifacts, min_age_s=check.run_timeout_s + check.timeout_s,
              protect=check.protect)  # a folder made at a run's start may belong to a worker's run still going
        return checked

    def _command(self, command: str, log: Path, name: str) -> RunResult:
        """``command`` in a clean copy of the commit's files (inside the run's temp folder, so the run's sandbox
        policy covers it), with what the run created moved to :data:`ENV_OUTPUTS` (data, never on an import
        path)."""
        assert self.pristine is not None
        base = tmp_for(self.run_dir) / CHECK_FOLDER
        if self.outputs is None:
            self.outputs = move_outputs(self.run_dir, self.pristine, base / "outputs")
        tree = check_tree(self.pristine, base / name)
        env = {**(environ.snapshot() if self.env is None else self.env), ENV_OUTPUTS: str(self.outputs)}
        argv = self.confine_command(command) if self.confine_command is not None else command
        return run_command(argv, tree, log, timeout_s=self.verification.timeout_s, env=env)

    def close(self) -> None:
        """End the verifier process if it is still waiting (the run did not end cleanly) and remove its
        working directory. Safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            process.cancel()
            process.wait()
        if self.cwd is not None:
            shutil.rmtree(self.cwd, ignore_errors=True)
            self.cwd = None
        if self.pristine is not None:
            shutil.rmtree(self.pristine, ignore_errors=True)
            self.pristine = None


__all__ = ["Verification", "Pending", "resolve", "close_enough", "model_command", "artifact_dir", "confined",
           "verifier_reads", "prune", "prepare_command", "MODEL", "AUTO", "ENV_OUTPUTS"]
