"""Experiments as a pandas DataFrame, and Karpathy's ``results.tsv``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import Experiment, Status

if TYPE_CHECKING:
    import pandas as pd

_TSV_STATUS = {Status.KEEP: "keep", Status.DISCARD: "discard", Status.CRASH: "crash", Status.TIMEOUT: "crash",
               Status.VIOLATION: "crash", Status.INTERRUPTED: "crash"}


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
            "number": e.number, "status": e.status.value, "metric": e.metric, "delta": delta,
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
        }
        for key in record:
            row[key] = e.summary.get(key)
        if metric not in row:
            row[metric] = e.metric
        if e.status == Status.KEEP and e.metric is not None:
            if best is None or (e.metric > best if maximize else e.metric < best):
                best = e.metric
        out.append(row)
    for row in out:
        row["is_best"] = row["status"] == "keep" and row["metric"] is not None and row["metric"] == best
    return out


def dataframe(experiments: list[Experiment], metric: str = "val_bpb", maximize: bool = False,
              record: tuple[str, ...] = ()) -> "pd.DataFrame":
    """Every experiment as a row, indexed by number; times as pandas timestamps."""
    import pandas as pd

    data = rows(experiments, metric, maximize, record)
    columns = list(data[0].keys()) if data else ["number", "status", "metric", "delta", "description",
                                                  "reason", metric, "is_best"]
    df = pd.DataFrame(data, columns=columns)
    for col in ("started_at", "ended_at"):
        if col in df:
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    return df.set_index("number", drop=False).rename_axis(None)


def tsv_text(experiments: list[Experiment], metric: str = "val_bpb", memory_key: str = "peak_memory_mb") -> str:
    """Karpathy's five columns, tab-separated: commit, <metric>, memory_gb, status, description.

    Experiments that never ran (invalid, skipped, proposed) have no commit and are left out, as in his loop.
    """
    lines = [f"commit\t{metric}\tmemory_gb\tstatus\tdescription"]
    for e in experiments:
        status = _TSV_STATUS.get(e.status)
        if status is None:
            continue
        value = e.metric if (e.metric is not None and status != "crash") else 0.0
        mem = e.summary.get(memory_key)
        mem_gb = float(mem) / 1024 if isinstance(mem, (int, float)) and status != "crash" else 0.0
        desc = " ".join(e.description.split()).replace("\t", " ")
        lines.append(f"{(e.sha or '0000000')[:7]}\t{value:.6f}\t{mem_gb:.1f}\t{status}\t{desc}")
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
        # mkstemp makes the file private (0600); results.tsv is meant to be read by others (a shared server)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
