"""The loop's side of honest decisions: baseline repeats, confirmation runs, ``measure_noise``, ``revalidate``.

:class:`Repeats` is a collaborator the :class:`autoresearch_nb.Loop` owns (given the run's recorder, run plan,
worktree and stop signal, nothing else); the statistics and the rule are the pure functions of
:mod:`autoresearch_nb.noise`. Seeds: repeat ``i`` of a commit runs with ``seed + i`` (the
baseline's three runs get 42, 43, 44; a confirmation of an experiment first run with 42 gets 43), passed as
``AUTORESEARCH_SEED``; ``measure_noise`` and ``revalidate`` take seeds not yet used on that commit. A repeat
is no new experiment: its value and seed go into its experiment's ``runs`` and ``seeds`` (``metric`` becomes
their mean), its log is ``<number>.<i>.log``, its curve is not stored. The floor lives in the run state
(``state["noise"]``), so a resumed run keeps it; re-validations in ``state["revalidations"]``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from . import noise as _noise
from . import paired as _paired
from .errors import AutoresearchError
from .events import EventKind
from .git import Workspace
from .recorder import PointBuffer, Recorder
from .records import CurvePoint, Experiment, RunResult, Status, is_baseline
from .pipeline import Hooks, StopSignal
from .trial import Plan, classify

log = logging.getLogger("autoresearch_nb")


def with_first_run(exp: Experiment) -> Experiment:
    """``exp`` with its own clean run as the first of its ``runs`` (the evidence every decision is made from)."""
    if not exp.runs and exp.metric is not None:
        return exp.with_(runs=[exp.metric], seeds=[exp.seed] if exp.seed is not None else [])
    return exp


def repeat_failed(failed: Status | None) -> Status:
    """What a candidate becomes when one of its repeat runs gives no metric: a run that broke a rule (a
    violation, a tampered or unverified number) makes the experiment that, since the rule holds for every run of
    a commit; a crash or timeout only discards it."""
    return failed if failed is not None and (failed == Status.VIOLATION or failed.rejected) else Status.DISCARD


class Repeats:
    """Repeat runs of commits in the loop's worktree: the noise floor, confirmations and re-validations."""

    def __init__(self, recorder: Recorder, plan: Plan, workspace: Workspace, stop: StopSignal) -> None:
        self.recorder = recorder
        self.plan = plan
        self.config = plan.config
        self.workspace = workspace
        self.stop = stop

    @property
    def noise(self) -> dict[str, Any] | None:
        """The measured noise floor (``sigma``, ``mad_sigma``, ``df`` and the repeats behind it), or None.

        Kept in the store's run state, so a resumed run keeps it.
        """
        return self.recorder.noise()

    def measure_noise(self, repeats: int | None = None) -> dict[str, Any]:
        """Run the best commit ``repeats`` more times (fresh seeds) and pool their spread into the noise floor.

        >>> loop.measure_noise(3)["sigma"]   # doctest: +SKIP
        0.0021
        """
        repeats = max(int(repeats or self.config.noise_repeats), 2)
        sha = self.recorder.head_sha()
        values: list[float] = []
        seeds: list[int] = []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            for i, seed in enumerate(self._fresh_seeds(sha, repeats)):
                value, error, interrupted, _ = self._rerun(sha, seed, f"noise-{stamp}.{i}", purpose="noise",
                                                       repeat=i)
                if interrupted:
                    break
                if value is None:
                    log.warning("noise repeat %d of %s failed: %s", i, sha[:7], error)
                    continue
                values.append(value)
                seeds.append(seed)
        finally:
            self.workspace.restore(sha)
        if len(values) < 2:
            raise AutoresearchError(f"only {len(values)} of {repeats} noise repeats gave a metric; the floor "
                                    "is unchanged (see the logs under .autoresearch/logs)")
        return self._record_floor({"source": "measure_noise", "sha": sha, "values": values, "seeds": seeds})

    def revalidate(self) -> dict[str, Any] | None:
        """Re-run the best kept commit once (a fresh seed) and report its drift from the recorded metric.

        The entry is added to the run state's ``revalidations``; the best's record is left as it was.
        """
        best = self.recorder.best
        if best is None or not best.sha:
            return None
        seed = self._fresh_seeds(best.sha, 1)[0]
        done = list(self.recorder.state().get("revalidations", []))
        value, error, _, _ = self._rerun(best.sha, seed, f"{best.number:04d}.revalidate{len(done)}", best,
                                      purpose="revalidation", repeat=len(done))
        sigma = (self.noise or {}).get("sigma")
        entry: dict[str, Any] = {"number": best.number, "sha": best.sha, "seeds": [seed], "value": value,
                                 "recorded": best.metric, "error": error, "at": time.time()}
        if value is not None and best.metric is not None:
            worse = (best.metric - value) if self.config.maximize else (value - best.metric)
            limit = _noise.threshold_sigmas(self.config.noise_k or 2.0, 1, max(len(best.runs), 1))
            entry.update(drift=value - best.metric, drift_sigma=worse / sigma if sigma else None)
            entry["within_noise"] = entry["drift_sigma"] is None or entry["drift_sigma"] <= limit
            sig = f" ({entry['drift_sigma']:+.2f}σ)" if sigma else ""
            verdict = "within the noise" if entry["within_noise"] else "worse than the noise explains"
            message = f"re-validated #{best.number}: {value:.6g} vs recorded {best.metric:.6g}, drift " \
                      f"{entry['drift']:+.6g}{sig}, {verdict}"
        else:
            message = f"re-validation of #{best.number} failed: {error}"
        self.recorder.store.update_run_state(self.recorder.tag, revalidations=done + [entry])
        log.info(message)
        self.recorder.emit(EventKind.REVALIDATED, best, message=message, revalidation=entry)
        return entry

    def maybe_revalidate(self, kept: Experiment) -> None:
        """After a keep: re-validate the best every ``revalidate_every`` keeps."""
        every = self.config.revalidate_every
        if not every or kept.status != Status.KEEP or is_baseline(kept):
            return
        keeps = sum(1 for e in self.recorder.experiments if e.status == Status.KEEP and not is_baseline(e))
        if keeps and keeps % int(every) == 0:
            self.revalidate()

    @property
    def report(self) -> dict[str, Any] | None:
        """The noise floor with the paired rule's pooled differences under ``pairs`` (what ``Loop.noise`` shows)."""
        noise, pairs = self.noise, self.pair_state
        return {**(noise or {}), "pairs": pairs} if pairs else noise

    @property
    def pair_state(self) -> dict[str, Any] | None:
        """The pooled differences of the paired rule, from the run state (a resumed run keeps them)."""
        return self.recorder.state().get("pairs")

    @property
    def is_paired(self) -> bool:
        """The paired rule decides (``decision = paired`` with ``noise_k > 0``); ``noise_k = 0`` is the plain rule."""
        return self.config.decision == "paired" and float(self.config.noise_k) > 0

    def diff_floor(self) -> _paired.DiffFloor | None:
        """The floor of paired differences pooled over the run (``state["pairs"]``), else √2 σ of the noise
        floor, else None."""
        groups = (self.pair_state or {}).get("groups") or []
        noise = self.noise or {}
        return _paired.floor([g["diffs"] for g in groups], noise.get("sigma"), int(noise.get("df") or 0))

    def _paired_options(self, best: Experiment | None) -> dict[str, Any]:
        return dict(alpha=float(self.config.keep_alpha), max_seeds=int(self.config.max_seeds),
                    futility=float(self.config.futility), maximize=self.config.maximize,
                    best_label=f"#{best.number}" if best else "the best")

    def decision(self, exp: Experiment, best: Experiment | None) -> _noise.Decision:
        """The rule's verdict on the runs ``exp`` has now, without running anything (paired: on the seeds it
        shares with ``best``; with none shared, the unpaired rule)."""
        if self.is_paired and best is not None:
            exp = with_first_run(exp)
            diffs = [d for _, d in _paired.paired(dict(zip(exp.seeds, exp.runs)), dict(zip(best.seeds, best.runs)))]
            if diffs:
                return _paired.judge(diffs, self.diff_floor(), mean=exp.metric, **self._paired_options(best))
        values = exp.runs or ([exp.metric] if exp.metric is not None else [])
        return _noise.judge(values, best.metric if best else None,
                            best_n=max(len(best.runs), 1) if best else 1,
                            sigma=(self.noise or {}).get("sigma"), k=float(self.config.noise_k),
                            margin=float(self.config.confirm_margin), confirm_runs=int(self.config.confirm_runs),
                            below=float(self.config.confirm_below),
                            maximize=self.config.maximize, best_label=f"#{best.number}" if best else "the best")

    def holdout_threshold(self) -> float:
        """The bpb a keep's holdout (or gap) may lose against the best's: the noise threshold of two single
        runs (each holdout comes from one run), or ``holdout_tolerance`` without a floor."""
        sigma = (self.noise or {}).get("sigma")
        k = float(self.config.noise_k)
        if sigma and k > 0:
            return _noise.threshold_sigmas(k, 1, 1) * sigma
        return float(self.config.holdout_tolerance)

    def holdout_check(self, exp: Experiment, best: Experiment | None) -> Experiment:
        """A keep whose holdout bpb or gap got worse than the best's is ``overfit`` (:func:`noise.overfit`).
        Only for a lower-is-better metric (bits per byte): a holdout bpb says nothing about a maximised score."""
        if exp.status != Status.KEEP or best is None or self.config.maximize:
            return exp
        why = _noise.overfit(exp.holdout_bpb, exp.holdout_gap, best.holdout_bpb, best.holdout_gap,
                             self.holdout_threshold(), best_label=f"#{best.number}")
        return exp if why is None else exp.with_(status=Status.OVERFIT, reason=f"{why}; {exp.reason}")

    def judge(self, exp: Experiment, best: Experiment | None) -> Experiment:
        """Decide a clean run: keep, discard, or first confirm a marginal pass with more runs (seed + i)."""
        exp = with_first_run(exp)
        if is_baseline(exp):
            floor = self.noise if len(exp.runs) > 1 else None
            reason = "baseline"
            if floor and floor.get("sigma") is not None:
                reason += f" (mean of {len(exp.runs)} runs; noise floor σ={floor['sigma']:.3g}, " \
                          f"robust σ={floor['mad_sigma']:.3g})"
            return exp.with_(status=Status.KEEP, reason=reason, noise_sigma=(floor or {}).get("sigma"))
        if self.is_paired and best is not None:
            return self._judge_paired(exp, best)
        while True:
            d = self.decision(exp, best)
            exp = exp.with_(reason=d.reason, threshold=d.threshold, effect_sigma=d.effect_sigma,
                            noise_sigma=d.noise_sigma)
            if d.verdict != _noise.CONFIRM:
                return self.holdout_check(exp.with_(status=Status.KEEP if d.keep else Status.DISCARD), best)
            i = len(exp.runs)
            seed = (exp.seeds[0] if exp.seeds else self.plan.seed()) + i
            exp = self.recorder.save(exp)
            value, error, interrupted, failed = self._rerun(exp.sha or self.recorder.head_sha(), seed,
                                                            f"{exp.number:04d}.{i}",
                                                    exp, purpose="confirmation", track=True, repeat=i)
            if interrupted:
                return exp.with_(status=Status.INTERRUPTED, ended_at=time.time(),
                                 reason=f"stopped during confirmation run {i + 1}; {d.reason}")
            if value is None:
                return exp.with_(status=repeat_failed(failed),
                                 reason=f"confirmation run {i + 1} failed ({error}); {d.reason}")
            runs = [*exp.runs, value]
            exp = self.recorder.save(exp.with_(runs=runs, seeds=[*exp.seeds, seed], metric=sum(runs) / len(runs),
                                               ended_at=time.time()))

    def _judge_paired(self, exp: Experiment, best: Experiment) -> Experiment:
        """The paired sequential rule (:func:`paired.next_step`): the candidate at the best's seeds, the best run
        at a seed it lacks (that run stays in the best's ``runs`` for every later comparison), one seed at a time
        until the decision is clear. The decided metric is the best's plus the mean paired difference: the
        candidate's estimate on the best's seeds, so metrics of one run stay comparable."""
        floor = self.diff_floor()
        while True:
            cand = dict(zip(exp.seeds, exp.runs))
            step = _paired.next_step(cand, dict(zip(best.seeds, best.runs)), floor, **self._paired_options(best))
            if step.action == "decide":
                d = step.decision
                pairs = _paired.paired(cand, dict(zip(best.seeds, best.runs)))
                if len(pairs) >= 2:
                    self._record_pairs(exp, best, pairs)
                metric = best.metric + sum(x for _, x in pairs) / len(pairs) if pairs and best.metric is not None \
                    else exp.metric
                exp = exp.with_(metric=metric, reason=d.reason, threshold=d.threshold, effect_sigma=d.effect_sigma,
                                noise_sigma=d.noise_sigma)
                return self.holdout_check(exp.with_(status=Status.KEEP if d.keep else Status.DISCARD), best)
            why = step.decision.reason if step.decision is not None else "pairing its seed with the best"
            exp = self.recorder.save(exp.with_(reason=why))
            if step.action == "best":
                i = len(best.runs)
                value, error, interrupted, _ = self._rerun(best.sha or self.recorder.head_sha(), step.seed,
                                                           f"{best.number:04d}.{i}", best, purpose="pairing",
                                                           repeat=i)
                if interrupted:
                    return exp.with_(status=Status.INTERRUPTED, ended_at=time.time(),
                                     reason=f"stopped during a paired run of #{best.number}; {why}")
                if value is None:
                    return exp.with_(status=Status.DISCARD, reason=f"the paired run of #{best.number} at seed "
                                                                   f"{step.seed} failed ({error}); {why}")
                best = self.recorder.save(best.with_(runs=[*best.runs, value], seeds=[*best.seeds, step.seed]))
                continue
            i = len(exp.runs)
            value, error, interrupted, failed = self._rerun(exp.sha or self.recorder.head_sha(), step.seed,
                                                            f"{exp.number:04d}.{i}", exp, purpose="confirmation",
                                                            track=True, repeat=i)
            if interrupted:
                return exp.with_(status=Status.INTERRUPTED, ended_at=time.time(),
                                 reason=f"stopped during paired run {i + 1}; {why}")
            if value is None:
                return exp.with_(status=repeat_failed(failed), reason=f"paired run {i + 1} failed ({error}); {why}")
            runs = [*exp.runs, value]
            exp = self.recorder.save(exp.with_(runs=runs, seeds=[*exp.seeds, step.seed],
                                               metric=sum(runs) / len(runs), ended_at=time.time()))

    def _record_pairs(self, exp: Experiment, best: Experiment, pairs: list[tuple[int, float]]) -> None:
        """Add a decided candidate's paired differences to the run's pooled floor (the run state: a resume
        keeps it). One group per candidate: the floor is their within-candidate spread."""
        state = self.recorder.state().get("pairs") or {}
        groups = [g for g in state.get("groups") or [] if g.get("number") != exp.number]
        groups.append({"number": exp.number, "against": best.number, "seeds": [s for s, _ in pairs],
                       "diffs": [d for _, d in pairs]})
        floor = _paired.floor([g["diffs"] for g in groups])
        self.recorder.store.update_run_state(self.recorder.tag, pairs={
            "groups": groups, "sigma": floor.sigma if floor else None, "df": floor.df if floor else 0,
            "pairs": floor.pairs if floor else 0})

    def baseline(self, exp: Experiment) -> Experiment:
        """Run the baseline ``noise_repeats - 1`` more times and record the noise floor (noise_k > 0 only).

        A baseline stopped part-way keeps the runs it has (status ``interrupted``); called again on it (a
        resumed run), it runs only the repeats still missing.
        """
        repeats = int(self.config.noise_repeats)
        if exp.metric is None or float(self.config.noise_k) <= 0 or repeats < 2:
            return exp
        if exp.status != Status.RUNNING and not (exp.status == Status.INTERRUPTED and exp.runs):
            return exp  # a failed first run, or one stopped before any repeat: nothing to add to
        first = exp.seeds[0] if exp.seeds else (exp.seed if exp.seed is not None else self.plan.seed())
        if not exp.runs:
            exp = exp.with_(runs=[exp.metric], seeds=[first])
        exp = self.recorder.save(exp.with_(status=Status.RUNNING, reason="", decided_at=None))
        for i in range(exp.seeds[-1] - first + 1, repeats):  # on a resume: after the last repeat that ran
            value, error, interrupted, _ = self._rerun(exp.sha or self.recorder.head_sha(), first + i,
                                                    f"{exp.number:04d}.{i}", exp, purpose="noise", track=True,
                                                    repeat=i)
            if interrupted:
                return self.recorder.save(exp.with_(status=Status.INTERRUPTED, ended_at=time.time(),
                                                    reason=f"stopped during baseline repeat {i + 1} of {repeats}; "
                                                           "reopening the run completes the noise floor"))
            if value is None:  # left out of the floor, and said in the row (its error), not only in a log
                log.warning("baseline repeat %d failed: %s", i + 1, error)
                note = f"repeat {i + 1} of {repeats} (seed {first + i}) failed and is left out of the floor: {error}"
                exp = self.recorder.save(exp.with_(error=f"{exp.error}; {note}" if exp.error else note))
                continue
            runs = [*exp.runs, value]
            exp = self.recorder.save(exp.with_(runs=runs, seeds=[*exp.seeds, first + i],
                                               metric=sum(runs) / len(runs), ended_at=time.time()))
        if len(exp.runs) > 1:
            self._record_floor({"source": f"baseline #{exp.number}", "sha": exp.sha, "values": exp.runs,
                                "seeds": exp.seeds})
        return exp

    def _record_floor(self, group: dict[str, Any]) -> dict[str, Any]:
        groups = [*((self.noise or {}).get("groups") or []), group]
        pooled = _noise.pool(g["values"] for g in groups)
        floor = {"sigma": pooled.sigma if pooled else None, "mad_sigma": pooled.mad_sigma if pooled else None,
                 "df": pooled.df if pooled else 0, "n": pooled.n if pooled else 0, "k": self.config.noise_k,
                 "groups": groups, "measured_at": time.time()}
        self.recorder.store.update_run_state(self.recorder.tag, noise=floor)
        if pooled:
            self.recorder.emit(EventKind.NOISE_FLOOR, message=f"noise floor σ={pooled.std:.3g} (robust {pooled.mad_sigma:.3g}) "
                                                  f"from {pooled.n} runs, {pooled.df} degrees of freedom",
                       noise=floor)
        return floor

    def _fresh_seeds(self, sha: str, count: int) -> list[int]:
        """Seeds not yet used on commit ``sha``: a repeat with an old seed would only replay the same run."""
        used: set[int] = set()
        for e in self.recorder.experiments:
            if e.sha == sha:
                used.update(e.seeds or ([e.seed] if e.seed is not None else []))
        state = self.recorder.state()
        for g in [*((state.get("noise") or {}).get("groups") or []), *(state.get("revalidations") or [])]:
            if g.get("sha") == sha:
                used.update(g.get("seeds") or [])
        out: list[int] = []
        seed = self.plan.seed()
        while len(out) < count:
            if seed not in used:
                out.append(seed)
            seed += 1
        return out

    def _rerun(self, sha: str, seed: int, label: str, exp: Experiment | None = None, purpose: str = "noise",
               track: bool = False, repeat: int = 1) -> tuple[float | None, str | None, bool, Status | None]:
        """Run commit ``sha`` once more with ``seed``: (metric or None, why not, interrupted, the failed run's
        status: crash, timeout, violation, tampered...).

        Repeats keep one record (their experiment's ``runs``), their own log (``<number>.<i>.log``) and their
        curve in the store, beside the experiment's own (``store.repeat_curves``: the spread of the baseline's
        repeats at each progress is the noise early stopping compares against); observers get their progress
        events with ``purpose`` in the event data. A repeat's curve is keyed ``<purpose>:<label>``.
        """
        number = exp.number if exp is not None else "noise"
        self.recorder.emit(EventKind.REPEAT_STARTED, exp, message=f"{purpose} run of {sha[:7]}, seed {seed}",
                           purpose=purpose, seed=seed, repeat=repeat)
        curve = PointBuffer(self.recorder.store, self.recorder.tag, exp.number if exp is not None else -1,
                            run=f"{purpose}:{label}")  # the log's name: unique per run of the session
        curve.store.clear_points(curve.tag, curve.number, curve.run)  # a resumed repeat starts its curve anew

        def on_point(point: CurvePoint) -> None:
            curve.add(point)
            self.recorder.emit(EventKind.PROGRESS, exp, point, purpose=purpose, repeat=repeat, seed=seed)

        def on_start(pid: int) -> None:
            if track and exp is not None:
                self.recorder.save(exp.with_(pid=pid))  # so a resumed loop can kill an orphaned repeat

        def on_interrupt(_result: RunResult) -> None:
            if track and exp is not None:
                self.recorder.save(exp.with_(status=Status.INTERRUPTED, ended_at=time.time(),
                                             reason=f"interrupted during a {purpose} run"))

        job = self.plan.job(number, sha, seed, label, purpose=purpose, repeat=repeat)
        hooks = Hooks(on_point=on_point, on_start=on_start, on_interrupt=on_interrupt,
                      on_phase=lambda name: self.recorder.emit(EventKind.PHASE, exp, message=name, purpose=purpose,
                                                               repeat=repeat, seed=seed))
        try:
            result, changed = self.plan.finish(job, self.plan.run_here(job, self.stop, hooks))
        finally:
            curve.flush()
        if result.interrupted:
            return None, "interrupted", True, Status.INTERRUPTED
        verdict = classify(result, self.config.metric, changed, self.config.editable)
        if verdict.status == Status.RUNNING:
            return verdict.metric, None, False, None
        return None, verdict.reason, False, verdict.status
