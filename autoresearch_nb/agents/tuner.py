"""The offline tuner: Optuna (TPE) over the editable file's CAPS hyperparameters. Needs no API key.

Each proposal is an ordinary edit of a few constants with a readable description
(``"MATRIX_LR 0.04 -> 0.028, DEPTH 8 -> 10"``), so it flows through the same diff, commit, run and
keep/revert path as Claude's.

How it works:

* The search space comes from :func:`autoresearch_nb.agents.space.discover`, run on the first
  experiment's file (the baseline), so bounds stay put while the best file moves.
* The Optuna study is rebuilt from the run's experiments before every proposal: every finished
  experiment whose file parses becomes a trial (KEEP and DISCARD with their metric; CRASH and TIMEOUT
  with the worst metric seen so far, so the sampler learns to stay away; otherwise FAIL). Resuming a
  run therefore rebuilds exactly the same study, and the next proposal of a resumed run equals the one
  an uninterrupted run would have made (the sampler is seeded from the seed and the trial count).
* ``mode="local"`` (default) asks TPE for one to three constants at a time and keeps the others at the
  best file's values: with tens of experiments, moving every constant at once is mostly noise.
  ``mode="global"`` samples every constant each time.
* Crash-aware: a *shape* (the dials that set what is built: ints, powers of two and choices, such as DEPTH,
  BATCH_SIZE, HEAD_DIM, ACTIVATION; never a float rate) that crashed, timed out or ran out of memory is not
  proposed again. Each such run is blamed on the shape dials it moved away from its parent (the kept file it was
  proposed on), at the values it set them to; a proposal, probe or sample holding all of those values is refused
  and the sampler asked again, unless some run holding those values ended cleanly (then the crash was the
  combination's, not the values'). A crash that moved only rates blames no shape (a learning rate that diverges
  says nothing about DEPTH).
* ``probes=True`` (default with TPE) starts with one-dial probes around the best file
  (:mod:`autoresearch_nb.agents.probe`): one constant one step at a time, the model-size dial and learning
  rates first, a kept move continued. The first five proposals are probes (while any is left untried), then
  every fourth; TPE makes the others. Probes are enqueued trials of the same study.

>>> agent = TunerAgent(Config(editable="target.py"), Path("."))  # doctest: +SKIP
>>> agent.propose(context).description                            # doctest: +SKIP
'MATRIX_LR 0.04 -> 0.028'
"""
from __future__ import annotations

import logging
import math
import random
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import Config
from ..edits import Edit, content_hash
from ..errors import AgentError, ConfigError
from ..records import Experiment, Status, is_baseline
from . import probe as _probe
from .base import Context, Proposal, QueueExhausted
from .space import Param, Space, SpaceError, discover

log = logging.getLogger("autoresearch_nb")

_ATTEMPTS = 40
# Probes early, then one in four. On the synthetic bowl of benchmarks/tuner_vs_random.py (optimum far from the
# start in every dial, 20 seeds), a full first pass of probes fell well behind TPE alone after 20 experiments;
# this mix is ahead at 6 experiments, level at 12 and 30, a little behind at 20. On train.py, whose defaults are
# already good, the early one-step probes are what found the gains.
_PROBE_EVERY = 4


class TunerAgent:
    """Propose hyperparameter changes with Optuna's ask/tell.

    ``sampler``: ``"tpe"`` (default) or ``"random"`` (the baseline the benchmark compares against).
    ``overrides``: per-name bounds or choices, see :func:`~autoresearch_nb.agents.space.discover`.
    ``probes``: start with one-dial probes (default: with TPE, not with the random baseline).
    ``study_dir``: also write the study to ``study_dir/<tag>.db`` (Optuna's SQLite storage), so
    ``optuna-dashboard sqlite:///...`` shows it live; the loop passes ``.autoresearch/optuna``.
    """

    name = "tuner"

    def __init__(self, config: Config, repo: Path | str = ".", *, seed: int | None = None,
                 sampler: str = "tpe", mode: str = "local", overrides: Mapping[str, Any] | None = None,
                 n_startup_trials: int = 5, probes: bool | None = None,
                 study_dir: str | Path | None = None) -> None:
        if sampler not in ("tpe", "random"):
            raise ConfigError(f"sampler must be 'tpe' or 'random', not {sampler!r}")
        if mode not in ("local", "global"):
            raise ConfigError(f"mode must be 'local' or 'global', not {mode!r}")
        self.config = config
        self.repo = Path(repo)
        # With no seed given, each run (tag) gets its own search path: two campaigns on the same file
        # should not propose the same sequence. A resumed run keeps its tag, so it keeps its path.
        self._explicit_seed = seed is not None or config.seed is not None
        self.seed = seed if seed is not None else (config.seed if config.seed is not None else 0)
        self.sampler_name = sampler
        self.mode = mode
        self.overrides = dict(overrides or {})
        self.n_startup_trials = n_startup_trials
        self.probes = (sampler == "tpe") if probes is None else bool(probes)
        self.study: Any = None            # the study behind the last proposal, for inspection
        self.space: Space | None = None
        self.crashed: list[dict[str, Any]] = []  # the shapes the last proposal steered clear of (Optuna units)
        self._told: dict[int, Experiment] = {}
        self.study_dir = study_dir       # where <tag>.db mirrors the study for optuna-dashboard (None: nowhere)
        self._storage: tuple[str, Any] | None = None

    # --- the agent protocol ----------------------------------------------------------------------

    def warm(self) -> None:
        """Import Optuna now (the loop calls this while the baseline runs)."""
        import optuna  # noqa: F401

    def propose(self, context: Context) -> Proposal:
        """Rebuild the study from the run's experiments, ask it for one trial, return it as edits."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        history = self._history(context)
        if not self._explicit_seed and history:
            self.seed = zlib.crc32(history[0].tag.encode()) % 100_003
        space = self._space(context, history)
        base = space.encoded(context.source)
        if base is None:
            raise AgentError(f"the tunable constants of {context.editable} no longer parse")
        study, n_trials = self._build(space, history, context)
        self.study, self.space = study, space

        taken = {content_hash(context.source)}
        taken |= {content_hash(e.content) for e in (*history, *context.in_flight) if e.content}
        rng = random.Random(self._sampler_seed(n_trials) + 1)
        crashed = crashed_shapes(space, history)
        self.crashed = crashed
        move = self._probe(space, base, context, history, taken, crashed)
        for attempt in range(_ATTEMPTS):
            # a probe if one is due; then the sampler (local moves, then global ones); when it keeps landing
            # on files already tried (small discrete spaces), uniform draws around the best file
            if attempt == 0 and move is not None:
                fixed = {**base, move.name: move.value}
            elif attempt < _ATTEMPTS // 2:
                local = self.mode == "local" and n_trials > 0 and len(space) > 1
                fixed = self._fixed(space, base, rng) if local else {}
            else:
                fixed = {**base, **_uniform(self._fixed(space, base, rng), space, base, rng)}
            if fixed:
                study.enqueue_trial(fixed, skip_if_exists=False)
            trial = study.ask()
            params = {p.name: _suggest(trial, p) for p in space}
            values = {p.name: p.decode(params[p.name]) for p in space}
            current = space.values(context.source)
            changed = {n: v for n, v in values.items() if space[n].encode(v) != space[n].encode(current[n])}
            content = space.render(context.source, changed)
            if changed and content_hash(content) not in taken and not _blamed(crashed, params):
                break
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a repeat, or a shape that crashed: ask again
        else:
            raise QueueExhausted(f"the tuner found nothing new to try in {len(space)} constants "
                                 f"after {_ATTEMPTS} attempts; the search space looks exhausted")
        description = space.describe(context.source, changed)
        strategy = "probe" if move is not None and attempt == 0 else self.sampler_name
        return Proposal(description=description, edits=_edits(context.source, content), content=content,
                        model=f"optuna-{strategy}",   # the table's model column says which way it was made
                        meta={"params": {n: _plain(v) for n, v in values.items()}, "trial": trial.number,
                              "strategy": strategy})

    def tell(self, experiment: Experiment) -> None:
        """Note a finished experiment. The study itself is rebuilt from the history on each proposal."""
        self._told[experiment.number] = experiment

    # --- the study -------------------------------------------------------------------------------

    def _history(self, context: Context) -> list[Experiment]:
        merged = {e.number: e for e in self._told.values()}
        merged.update({e.number: e for e in context.history})
        return [merged[n] for n in sorted(merged)]

    def _space(self, context: Context, history: list[Experiment]) -> Space:
        origin = next((e.content for e in history if e.content), None) or context.source
        try:
            space = discover(origin, context.editable, self.overrides)
        except SpaceError as e:
            raise AgentError(f"the tuner cannot read {context.editable}: {e}") from None
        if not len(space):
            raise AgentError(
                f"the tuner found no tunable constants in {context.editable}: it tunes module-level CAPS "
                "assignments of numbers and booleans (strings and tuples with a '# choices: a, b' comment) "
                "above the first function. Add such a block, or use the claude agent.")
        # constants the best file no longer has (or has outside the bounds) stay as they are
        current = space.values(context.source)
        # and a conditional one is left alone where it does nothing (MUON_LR under AdamW): no proposal, probe,
        # trial or importance spends anything on an inert dial
        active = tuple(p for p in space if p.name in current and p.contains(p.encode(current[p.name]))
                       and p.active(current))
        if not active:
            raise AgentError(f"none of the tunable constants of {context.editable} are left in the current file")
        return Space(active, space.path, space.skipped)

    def _build(self, space: Space, history: list[Experiment], context: Context) -> tuple[Any, int]:
        import optuna

        from ..study import study_trials

        trials = study_trials(space, history, self.config.maximize)
        seed = self._sampler_seed(len(trials))
        if self.sampler_name == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        study = optuna.create_study(direction=self.config.direction, sampler=sampler)
        study.add_trials(trials)
        if self.study_dir is not None and history:
            self._write_study(history[0].tag, trials)
        return study, len(trials)

    def _write_study(self, tag: str, trials: list[Any]) -> None:
        """Mirror the study into ``study_dir/<tag>.db`` for optuna-dashboard (best effort: never fails a run)."""
        from .. import study as _study

        path = Path(self.study_dir) / f"{tag}.db"
        try:
            # opened once (about a second); again when the tag changes or someone removed the file
            if self._storage is None or self._storage[0] != tag or not path.exists():
                self._storage = (tag, _study.storage(path))
            _study.sync(self._storage[1], tag, self.config.direction, trials)
        except Exception:  # a locked or broken mirror must not stop the search; the store is the truth
            log.warning("tuner: could not write the Optuna study file", exc_info=True)
            self._storage = None

    def _probe(self, space: Space, base: dict[str, Any], context: Context, history: list[Experiment],
               taken: set[str], crashed: Sequence[Mapping[str, Any]] = ()) -> _probe.Move | None:
        """The next one-dial probe around the best file, if one is due and untried; else None (ask TPE)."""
        if not self.probes:
            return None
        proposed = sum(1 for e in history if not is_baseline(e)) + len(context.in_flight)
        if proposed >= _PROBE_EVERY and proposed % _PROBE_EVERY:
            return None  # the first five proposals are probes, then every fourth; TPE makes the rest
        kept = []
        for e in history:
            if e.status == Status.KEEP:
                params = space.encoded(e.content or "")
                if params is not None:
                    kept.append(params)
        for move in _probe.moves(space, base, self.seed, first=_probe.last_move(kept)):
            name = move.name
            content = space.render(context.source, {name: space[name].decode(move.value)})
            if content_hash(content) not in taken and not _blamed(crashed, {**base, name: move.value}):
                return move
        return None

    def _sampler_seed(self, n_trials: int) -> int:
        return (int(self.seed) * 1_000_003 + n_trials) % (2**31 - 1)

    def _fixed(self, space: Space, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """The constants to hold at the best file's values: all but one to three."""
        k = min(len(space) - 1, rng.choices((1, 2, 3), weights=(5, 3, 2))[0])
        free = set(rng.sample(space.names, k)) if k > 0 else set()
        return {n: x for n, x in base.items() if n not in free}


# --- crashed shapes --------------------------------------------------------------------------------

FAILED_RUNS = (Status.CRASH, Status.TIMEOUT)  # a crash (an out-of-memory error is one) or the hard timeout


def is_shape(p: Param) -> bool:
    """Whether ``p`` sets what is built (a size, a count, a structural choice), not a rate: ints, powers of two
    and choices. A float is a rate or a fraction, whose crash (a diverging learning rate) blames no shape."""
    return p.kind in ("int", "pow2", "choice")


def crashed_shapes(space: Space, history: list[Experiment]) -> list[dict[str, Any]]:
    """The shapes known to crash: for each crashed or timed-out run, the shape dials it moved from its parent and
    the values it set (Optuna units), oldest first; one whose values all appear in a run that did not crash is
    left out."""
    shapes = [p.name for p in space if is_shape(p)]
    if not shapes:
        return []
    encoded = {e.number: space.encoded(e.content) for e in history if e.content and e.status.ran}
    kept = {e.sha: e.number for e in history if e.status == Status.KEEP and e.sha}
    blamed: list[dict[str, Any]] = []
    clean: list[dict[str, Any]] = []
    last_keep: int | None = None
    for e in history:
        params = encoded.get(e.number)
        if params is not None and e.status in FAILED_RUNS:
            # the parent: the kept commit it was proposed on, else (rows without commits) the last keep before it
            key = kept.get(e.parent_sha, last_keep) if e.parent_sha else last_keep
            parent = encoded.get(key) if key is not None else None
            if parent is not None:
                moved = {n: params[n] for n in shapes if params[n] != parent.get(n)}
                if moved and moved not in blamed:
                    blamed.append(moved)
        elif params is not None:
            clean.append(params)
        if e.status == Status.KEEP:
            last_keep = e.number
    return [b for b in blamed if not any(_blamed([b], c) for c in clean)]


def _blamed(crashed: Iterable[Mapping[str, Any]], params: Mapping[str, Any]) -> bool:
    """Whether ``params`` (Optuna units) hold every value of one of the ``crashed`` shapes."""
    return any(all(n in params and params[n] == x for n, x in shape.items()) for shape in crashed)


# --- helpers ---------------------------------------------------------------------------------------

def _uniform(fixed: dict[str, Any], space: Space, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Uniform draws (in Optuna's units) for the constants that ``fixed`` leaves free."""
    out = {}
    for p in space:
        if p.name in fixed:
            continue
        if p.kind == "choice":
            out[p.name] = rng.choice(p.choices)
        elif p.kind in ("int", "pow2"):
            out[p.name] = rng.randint(int(p.low), int(p.high))
        elif p.log:
            out[p.name] = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        else:
            out[p.name] = rng.uniform(p.low, p.high)
    return out


def _suggest(trial: Any, p: Param) -> Any:
    if p.kind == "float":
        return trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
    if p.kind in ("int", "pow2"):
        return trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_categorical(p.name, list(p.choices))


def _edits(old: str, new: str) -> tuple[Edit, ...]:
    """One search/replace edit per changed line, when each old line is unique in the file."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    if len(a) != len(b):
        return ()
    edits = []
    for x, y in zip(a, b):
        if x != y:
            if old.count(x) != 1:
                return ()
            edits.append(Edit(x, y))
    return tuple(edits)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
