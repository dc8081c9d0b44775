"""Experiments as a pandas DataFrame, and Karpathy's ``results.tsv``."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable

from .faults import pause
from .records import Experiment, Status, best_of, status_word
from .safetext import printable

if TYPE_CHECKING:
    import pandas as pd

_TSV_STATUS = {Status.KEEP: "keep", Status.DISCARD: "discard", Status.CRASH: "crash", Status.TIMEOUT: "crash",
               Status.VIOLATION: "crash", Status.INTERRUPTED: "crash",
               # refused by verification or the guard: ran and gave a number, but it is not kept
               Status.TAMPERED: "discard", Status.GUARD_FAILED: "discard", Status.OVER_BUDGET: "discard",
               Status.PRUNED: "discard",
               Status.OVERFIT: "discard",
               Status.UNVERIFIED: "crash"}  # no trusted number at all


def rows(experiments: list[Experiment], metric: str = "val_bpb", maximize: bool = False,
         record: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One dict per experiment, with ``delta`` against the best kept before it and ``is_best``."""
    best: float | None = None
    out = []
    for e in experiments:
        delta = None
        if e.metric is not None and best is not None:
            delta = e.metric - best
        row: dict[str, Any] = {
            # the word the dashboard shows (a user's rejection reads "rejected"), so counts agree with it
            "number": e.number, "status": status_word(e.status, e.reason), "metric": e.metric, "delta": delta,
            "description": e.description, "reason": e.reason,
            "wall_seconds": e.wall_seconds, "training_seconds": e.training_seconds,
            "cost_usd": e.cost_usd, "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
            "cache_read_tokens": e.cache_read_tokens, "cache_write_tokens": e.cache_write_tokens,
            "agent": e.agent, "model": e.model, "seed": e.seed, "sha": e.sha, "parent_sha": e.parent_sha,
            "started_at": e.started_at, "ended_at": e.ended_at, "error": e.error, "log_path": e.log_path,
            "tag": e.tag,
            # the evidence behind the decision: each run's value, the floor σ, the threshold, effect in σ
            "n_runs": len(e.runs) or (1 if e.metric is not None else 0), "runs": list(e.runs),
            "noise_sigma": e.noise_sigma, "threshold": e.threshold, "effect_sigma": e.effect_sigma,
            # verification: was the metric re-measured by the loop's verifier ("unverified" when off), and
            # what the run itself printed
            "verified": bool(e.verified), "claimed": e.claimed,
            # the holdout (verify = "model"): bpb on bytes training never saw, and holdout - val
            "holdout_bpb": e.holdout_bpb, "holdout_gap": e.holdout_gap,
            # overlap (autoresearch_nb.lookahead): the proposal's seconds, the run it was prepared during
            "propose_seconds": e.propose_seconds, "prepared_during": e.prepared_during,
            "reapplied_onto": e.reapplied_onto,
            # provenance (autoresearch_nb.provenance): what the number came from
            "harness": e.harness, "verifier": e.verifier, "eval_bytes": e.eval_bytes, "corpus": e.corpus,
            "tokenizer": e.tokenizer, "torch": e.torch,
            # the boundary the run actually ran under (bubblewrap+landlock, bubblewrap, landlock, none)
            "sandbox": e.sandbox,
            # the budget clock (wall or cpu) and the loop's own measure of the whole run on it
            "budget_clock": e.budget_clock, "run_seconds": e.run_seconds,
            # where the first run's time went: prepare, start (imports, data), train, evaluate, verify
            "phase_seconds": dict(e.phase_seconds),
        }
        for key in record:
            row[key] = e.summary.get(key)
        if metric not in row:
            row[metric] = e.metric
        if e.status == Status.KEEP and e.metric is not None:
            if best is None or (e.metric > best if maximize else e.metric < best):
                best = e.metric
        out.append(row)
    top = best_of(experiments, maximize)
    for row in out:  # ties with the best are best too
        row["is_best"] = row["status"] == "keep" and top is not None and row["metric"] == top.metric
    return out


def dataframe(experiments: list[Experiment], metric: str = "val_bpb", maximize: bool = False,
              record: tuple[str, ...] = (), stats: dict[str, Any] | None = None) -> "pd.DataFrame":
    """Every experiment as a row, indexed by number; times as pandas timestamps; ``stats`` (the run's
    :func:`run_stats`) go into ``df.attrs``."""
    import pandas as pd

    data = rows(experiments, metric, maximize, record)
    columns = list(data[0].keys()) if data else ["number", "status", "metric", "delta", "description",
                                                  "reason", metric, "is_best"]
    df = pd.DataFrame(data, columns=columns)
    for col in ("started_at", "ended_at"):
        if col in df:
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    df = df.set_index("number", drop=False).rename_axis(None)
    df.attrs.update(stats or {})
    return df


def run_stats(experiments: Iterable[Experiment], state: Mapping[str, Any]) -> dict[str, Any]:
    """The run's overlap figures: ``duty_cycle`` (``busy_s`` / ``wall_s`` of its ``optimize`` calls, None
    before any), ``prepared`` (proposals made during another run), ``reapplied`` (prepared changes a keep
    moved the branch under), ``conflicts`` (of those, the ones that did not merge), ``conflict_rate``."""
    duty = state.get("duty") or {}
    wall, busy = float(duty.get("wall_s", 0.0)), float(duty.get("busy_s", 0.0))
    rows = list(experiments)
    moved = [e for e in rows if e.reapplied_onto is not None]
    conflicts = sum(e.status == Status.INVALID for e in moved)
    return {"duty_cycle": busy / wall if wall > 0 else None, "busy_s": busy, "wall_s": wall,
            "prepared": sum(e.prepared_during is not None for e in rows), "reapplied": len(moved),
            "conflicts": conflicts, "conflict_rate": conflicts / len(moved) if moved else None}


TSV_HEADER = "commit\t{metric}\tmemory_gb\tstatus\tdescription"


def tsv_line(e: Experiment, memory_key: str = "peak_memory_mb") -> str | None:
    """One results.tsv line, or None for an experiment that never ran (invalid, skipped, proposed)."""
    status = _TSV_STATUS.get(e.status)
    if status is None:
        return None
    value = e.metric if (e.metric is not None and status != "crash") else 0.0
    mem = e.summary.get(memory_key)
    mem_gb = float(mem) / 1024 if isinstance(mem, (int, float)) and status != "crash" else 0.0
    desc = printable(" ".join(e.description.split()).replace("\t", " "))
    return f"{(e.sha or '0000000')[:7]}\t{value:.6f}\t{mem_gb:.1f}\t{status}\t{desc}"


def tsv_text(experiments: list[Experiment], metric: str = "val_bpb", memory_key: str = "peak_memory_mb") -> str:
    """Karpathy's five columns, tab-separated: commit, <metric>, memory_gb, status, description.

    Experiments that never ran (invalid, skipped, proposed) have no commit and are left out, as in his loop.
    """
    lines = [TSV_HEADER.format(metric=metric)]
    lines += [line for line in (tsv_line(e, memory_key) for e in experiments) if line is not None]
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, experiments: list[Experiment], metric: str = "val_bpb",
              memory_key: str = "peak_memory_mb") -> None:
    """Write :func:`tsv_text` to ``path`` through a temporary file, so a reader never sees half a file."""
    text = tsv_text(experiments, metric, memory_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results.", suffix=".tsv")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        pause("results-tsv")
        # mkstemp makes the file private (0600); results.tsv is meant to be read by others (a shared server)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_temporaries(folder: Path, older_than_s: float = 60.0) -> list[Path]:
    """Remove the temporary files of :func:`write_tsv` that a killed process left in ``folder`` (old ones
    only: a young one may be another process's write in progress). Returns what was removed."""
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    for tmp in folder.glob(".results.*.tsv") if folder.is_dir() else ():
        try:
            if tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class ResultsFile:
    """A run's results.tsv kept current at a cost that does not grow with the run.

    :meth:`rewrite` writes the whole file (on open); :meth:`add` appends one decided experiment's line when
    it is the newest in the file, and rewrites only when an older experiment changes (parallel workers can
    finish out of order), so the file always lists experiments in number order.
    """

    def __init__(self, path: Path, metric: str = "val_bpb", memory_key: str = "peak_memory_mb") -> None:
        self.path = Path(path)
        self.metric = metric
        self.memory_key = memory_key
        self._last = -1  # the highest experiment number in the file
        sweep_temporaries(self.path.parent)

    def rewrite(self, experiments: list[Experiment]) -> None:
        write_tsv(self.path, experiments, self.metric, self.memory_key)
        ran = [e.number for e in experiments if _TSV_STATUS.get(e.status) is not None]
        self._last = max(ran, default=-1)

    def add(self, exp: Experiment, experiments: Callable[[], list[Experiment]]) -> None:
        """Record ``exp`` (just decided); ``experiments`` gives the whole run when a rewrite is needed."""
        line = tsv_line(exp, self.memory_key)
        if line is None:
            return
        if exp.number <= self._last or not self.path.exists():
            self.rewrite(experiments())
            return
        with open(self.path, "a") as f:
            f.write(line + "\n")
        self._last = exp.number
