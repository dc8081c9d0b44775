"""Frozen records that flow through the loop: experiments, curve points, run results."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from collections.abc import Iterable
from typing import Any


class Status(str, enum.Enum):
    """Where an experiment is, or how it ended."""

    PROPOSED = "proposed"      # the agent's edit is applied in memory, nothing has run
    RUNNING = "running"        # committed and running (a row left in this state after a crash becomes INTERRUPTED)
    KEEP = "keep"              # improved on the best: the branch moved forward
    DISCARD = "discard"        # ran fine but did not improve: the branch went back to the parent
    CRASH = "crash"            # non-zero exit, FAIL, or no metric in the summary
    TIMEOUT = "timeout"        # killed at the hard timeout
    VIOLATION = "violation"    # the run changed something besides the editable file
    INTERRUPTED = "interrupted"  # stopped by the user, a signal, or a dead loop process
    INVALID = "invalid"        # the proposal could not be applied (never ran)
    SKIPPED = "skipped"        # the proposal equals a file already tried in this run
    # ran to the end, but the number cannot be trusted or the change must not be kept (autoresearch_nb.verify)
    TAMPERED = "tampered"      # the run's printed metric disagrees with the verifier's beyond the tolerance
    UNVERIFIED = "unverified"  # verification is on but the verifier gave no number (no artifact, no summary)
    GUARD_FAILED = "guard_failed"  # the guard command (e.g. the project's tests) failed
    OVER_BUDGET = "over_budget"  # trained longer than the time budget allows (the harness's clock)
    OVERFIT = "overfit"        # beat the best on val, but its holdout bpb or holdout gap got worse (noise.overfit)
    PRUNED = "pruned"          # stopped early: its curve stayed clearly worse than the best's (autoresearch_nb.prune)

    @property
    def finished(self) -> bool:
        return self not in (Status.PROPOSED, Status.RUNNING)

    @property
    def ran(self) -> bool:
        return self in (Status.KEEP, Status.DISCARD, Status.CRASH, Status.TIMEOUT, Status.VIOLATION,
                        Status.PRUNED) + REJECTED

    @property
    def rejected(self) -> bool:
        """Ran cleanly, but verification or the guard refused it (never kept)."""
        return self in REJECTED

    def __str__(self) -> str:  # so f-strings print "keep", not "Status.KEEP"
        return self.value


REJECTED = (Status.TAMPERED, Status.UNVERIFIED, Status.GUARD_FAILED, Status.OVER_BUDGET, Status.OVERFIT)


@dataclass(frozen=True)
class CurvePoint:
    """One parsed progress line: step, elapsed seconds, loss and any other numbers the line carried."""

    step: int | None
    elapsed_s: float
    loss: float | None = None
    values: dict[str, float] = field(default_factory=dict)


QUARTERS = (0.25, 0.5, 0.75, 1.0)  # where a curve summary reads the loss, as shares of the budget


@dataclass(frozen=True)
class CurveSummary:
    """A run's curve in a few numbers, for an agent's prompt: the training loss at 25/50/75/100 % of the budget
    (None where the run had no point near it: it stopped, or printed nothing there) and the share it reached."""

    losses: tuple[float | None, ...]
    reached: float

    @classmethod
    def of(cls, points: Iterable[CurvePoint], budget_s: float) -> "CurveSummary | None":
        """From stored progress points: a point's share is its own ``progress`` (``(40.0%)`` in its line) when it
        has one, else its elapsed seconds over the budget; the loss at each quarter is the nearest point's within
        a tenth of the budget. None without a point carrying a loss."""
        marks = []
        for p in points:
            share = p.values.get("progress")
            if not isinstance(share, (int, float)):
                share = p.elapsed_s / budget_s if budget_s > 0 else None
            if share is not None and p.loss is not None and p.loss == p.loss:  # not NaN
                marks.append((float(share), float(p.loss)))
        if not marks:
            return None
        losses = []
        for q in QUARTERS:
            share, loss = min(marks, key=lambda m: abs(m[0] - q))
            losses.append(loss if abs(share - q) <= 0.1 else None)
        return cls(tuple(losses), max(share for share, _ in marks))


@dataclass(frozen=True)
class RunResult:
    """What the runner saw of one subprocess."""

    exit_code: int | None
    timed_out: bool
    wall_s: float
    summary: dict[str, Any]
    failed: bool                 # the run printed FAIL
    error: str | None            # last traceback line or other short reason
    log_path: str
    interrupted: bool = False
    stalled: bool = False        # killed by the stall watchdog (no output for stall_s); timed_out is True too
    points: tuple[CurvePoint, ...] = ()
    # set by a verifier (autoresearch_nb.verify): the summary's metric is then the verifier's, ``claimed`` the
    # run's own printed number, and ``flag`` a status that refuses the run (tampered, guard_failed...) with why
    verified: bool = False
    claimed: float | None = None
    flag: Status | None = None
    flag_reason: str = ""
    log_cut: int = 0             # bytes of output cut from the middle of the log (runner.LOG_CAP)
    sandbox: str | None = None   # the boundary it actually ran under (sandbox.label), set where it ran
    clock: str | None = None     # the budget clock it ran on (autoresearch_nb.clock): wall or cpu
    run_seconds: float | None = None  # the loop's measure of the whole run on that clock (process tree, outside)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall seconds in each pipeline phase


@dataclass(frozen=True)
class Experiment:
    """One experiment of a run. Frozen: the loop makes updated copies with :func:`dataclasses.replace`."""

    number: int
    tag: str
    status: Status
    description: str = ""
    parent_sha: str | None = None
    sha: str | None = None
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    diff: str = ""
    content: str | None = None     # the editable file as proposed (kept until committed; used for duplicates)
    content_hash: str | None = None
    reason: str = ""               # why it was kept/discarded/failed, in words
    started_at: float | None = None
    ended_at: float | None = None
    training_seconds: float | None = None
    wall_seconds: float | None = None
    exit_code: int | None = None
    error: str | None = None
    log_path: str | None = None
    seed: int | None = None
    pid: int | None = None
    worker: int | None = None      # the parallel worker that ran it (None: the loop's own worktree)
    agent: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    created_at: float | None = None
    decided_at: float | None = None  # when the decision (or a rejection, or a failed run) was recorded
    # The evidence behind the decision (autoresearch_nb.noise): every run's metric and seed (metric is their
    # mean), the noise floor σ and the threshold used (metric units), and the improvement in units of σ.
    runs: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    noise_sigma: float | None = None
    threshold: float | None = None
    effect_sigma: float | None = None
    # verification (autoresearch_nb.verify): True when ``metric`` is the verifier's number, not the run's own;
    # ``claimed`` is what the run printed (the cross-check)
    verified: bool = False
    claimed: float | None = None
    # the verifier's bpb on the holdout split (never given to training) and holdout_bpb - val_bpb of that run
    holdout_bpb: float | None = None
    holdout_gap: float | None = None
    # Overlap (autoresearch_nb.lookahead): how long the agent took to propose it, the experiment that was running
    # meanwhile (None: proposed while the device was idle), and the kept experiment a prepared change was
    # re-applied onto when that keep moved the branch under it (status invalid then means it conflicted).
    propose_seconds: float | None = None
    prepared_during: int | None = None
    reapplied_onto: int | None = None
    # Provenance (autoresearch_nb.provenance): what the number came from, from the run's summary (the
    # verifier's facts winning): harness and verifier versions, the bytes scored, corpus, tokenizer, torch.
    harness: str | None = None
    verifier: str | None = None
    eval_bytes: int | None = None
    corpus: str | None = None
    tokenizer: str | None = None
    torch: str | None = None
    # the boundary the run actually ran under, where it ran (a Ray worker may differ from the driver):
    # bubblewrap+landlock, bubblewrap, landlock or none (autoresearch_nb.sandbox.label)
    sandbox: str | None = None
    # the budget clock the run trained on (wall or cpu, autoresearch_nb.clock) and the loop's own measure of the
    # whole run on it, from outside (its process tree): a resume may not mix clocks
    budget_clock: str | None = None
    run_seconds: float | None = None
    # seconds the (first) run spent in each phase (pipeline.PHASES: prepare, start, train, evaluate, verify)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        """``<Experiment #4 keep metric=0.9812 'LR 0.02 -> 0.01'>``: what a notebook cell shows, not the whole
        file the record carries (``content``, ``diff``)."""
        metric = f" metric={self.metric:.6g}" if self.metric is not None else ""
        return f"<Experiment #{self.number} {self.status.value}{metric} {self.description[:80]!r}>"

    def with_(self, **changes: Any) -> "Experiment":
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


USER_REJECTED = "rejected"  # how a proposal the user rejected reads: stored as ``invalid`` with this reason's start


def status_word(status: Status | str, reason: str | None = None) -> str:
    """The status as every view shows it (the table, ``loop.results``, the console): a proposal the user rejected
    reads ``rejected`` (it is stored as ``invalid``, never ran, like a proposal that could not run).

    >>> status_word(Status.INVALID, "rejected by the user"), status_word("invalid", "does not compile")
    ('rejected', 'invalid')
    """
    s = status.value if isinstance(status, Status) else str(status)
    return USER_REJECTED if s == Status.INVALID.value and (reason or "").startswith(USER_REJECTED) else s


def is_baseline(exp: Experiment) -> bool:
    """The run's first experiment, the unmodified file (the loop records it as description and agent "baseline")."""
    return exp.description == "baseline" and exp.agent == "baseline"


def best_of(experiments: Iterable[Experiment], maximize: bool = False) -> Experiment | None:
    """The kept experiment with the best metric (the earliest on a tie), or None before any keep."""
    best: Experiment | None = None
    for e in experiments:
        if e.status != Status.KEEP or e.metric is None:
            continue
        if best is None or (e.metric > best.metric if maximize else e.metric < best.metric):  # type: ignore[operator]
            best = e
    return best
