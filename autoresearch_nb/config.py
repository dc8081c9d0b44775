"""The loop's configuration. Field names are the notebook's parameter names and the CLI's flags
(``time_budget_s`` <-> ``-p time_budget_s 60`` <-> ``--time-budget-s 60`` or ``--time-budget 60``).

A research repo may keep defaults in ``autoresearch.toml`` at its root (a flat table of these names, or a
``[tool.autoresearch_nb]`` table in ``pyproject.toml``). Precedence: explicit arguments > config file > defaults.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError

CONFIG_FILE = "autoresearch.toml"
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential)", re.I)


@dataclass(frozen=True)
class Config:
    """Everything that defines a run's target and its limits."""

    editable: str = "train.py"                 # the only file the loop may change
    command: str = "python train.py"           # run in the worktree; must print the `---` summary
    metric: str = "val_bpb"
    direction: str = "minimize"                # or "maximize"
    record: tuple[str, ...] = ("peak_memory_mb",)  # other summary keys shown as table columns
    time_budget_s: float = 300.0               # passed to the run as AUTORESEARCH_TIME_BUDGET
    timeout_s: float | None = None             # hard kill; default: 2x budget (at least budget + 60 s)
    program: str = "program.md"                # the human's research instructions
    max_experiments: int | None = None
    env_allow: tuple[str, ...] = ()            # secret-looking variables the child may still see
    queue_file: str = "queue.toml"             # the queue agent's input
    model: str | None = None                   # the Claude agent's model
    effort: str | None = None
    max_cost_usd: float | None = None
    max_repairs: int = 2                       # repair turns for an edit that does not apply
    memory_key: str = "peak_memory_mb"         # summary key (MB) behind results.tsv's memory_gb
    seed: int | None = None                    # base seed passed to the run (AUTORESEARCH_SEED)
    setup: str | None = None                   # run once per session before the first experiment (data, tokenizer)
    workers: int = 1                           # experiments at once (one GPU or a share of the cores each)
    executor: str = "local"                    # "local" (subprocesses) or "ray" (tasks on a Ray cluster)
    ray_address: str | None = None             # None: start a local Ray instance; "auto" or "ray://..." to join
    # Decisions under noise (autoresearch_nb.noise). Repeat i of a commit runs with seed `seed + i`.
    noise_repeats: int = 3                     # baseline runs that measure the noise floor σ (1: none)
    noise_k: float = 2.0                       # keep only past k σ of the difference; 0: keep iff better
    confirm_runs: int = 1                      # extra runs (other seeds) for a pass that is only marginal
    confirm_margin: float = 1.0                # passes by less than this many σ over the threshold confirm
    confirm_below: float = 1.0                 # ... and so do near misses, better but under it by less (0: off)
    revalidate_every: int | None = None        # re-run the best after every N keeps and report drift

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"direction must be 'minimize' or 'maximize', not {self.direction!r}")
        if not self.editable or Path(self.editable).is_absolute() or ".." in Path(self.editable).parts:
            raise ConfigError(f"editable must be a path inside the repo, not {self.editable!r}")
        if self.time_budget_s is None or float(self.time_budget_s) <= 0:
            raise ConfigError(f"time_budget_s must be > 0, not {self.time_budget_s!r}")
        if self.timeout_s is not None and float(self.timeout_s) <= 0:
            raise ConfigError(f"timeout_s must be > 0, not {self.timeout_s!r}")
        if int(self.workers) < 1:
            raise ConfigError(f"workers must be >= 1, not {self.workers!r}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be 'local' or 'ray', not {self.executor!r}")
        if not str(self.command).strip():
            raise ConfigError("command is empty")
        try:
            shlex.split(self.command)
        except ValueError as e:
            raise ConfigError(f"command {self.command!r} cannot be parsed: {e}") from None
        if int(self.noise_repeats) < 1 or int(self.confirm_runs) < 0:
            raise ConfigError("noise_repeats must be >= 1 and confirm_runs >= 0")
        if float(self.noise_k) < 0 or float(self.confirm_margin) < 0 or float(self.confirm_below) < 0:
            raise ConfigError("noise_k, confirm_margin and confirm_below must be >= 0")
        if self.revalidate_every is not None and int(self.revalidate_every) < 1:
            raise ConfigError(f"revalidate_every must be >= 1 or None, not {self.revalidate_every!r}")

    @property
    def hard_timeout_s(self) -> float:
        if self.timeout_s is not None:
            return float(self.timeout_s)
        # 2x the budget, but never less than a minute over it: imports, compilation and evaluation
        # happen outside the training budget and a small budget must not turn them into timeouts.
        return max(2.0 * float(self.time_budget_s), float(self.time_budget_s) + 60.0)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def better(self, a: float, b: float | None) -> bool:
        """True when metric ``a`` is strictly better than ``b`` (``None`` is beaten by anything)."""
        if b is None:
            return True
        return a > b if self.maximize else a < b

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def config_names() -> list[str]:
    return [f.name for f in fields(Config)]


def coerce(name: str, value: Any) -> Any:
    """Turn a string (CLI flag, papermill parameter) into the type of field ``name``."""
    hints = get_type_hints(Config)
    if name not in hints:
        raise ConfigError(f"unknown setting {name!r}; known: {', '.join(config_names())}")
    hint = str(hints[name])
    if value is None:
        return None
    if "tuple" in hint:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(value)
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "") and "None" in hint:
        return None
    try:
        if hint.startswith("float") or "float" in hint and "int" not in hint:
            return float(value)
        if "int" in hint:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {'a whole number' if 'int' in hint else 'a number'}, not {value!r}") \
            from None
    return str(value)


def read_config_file(repo: Path) -> dict[str, Any]:
    """Settings from ``autoresearch.toml`` (or ``pyproject.toml``'s ``[tool.autoresearch_nb]``)."""
    data: dict[str, Any] = {}
    pyproject = repo / "pyproject.toml"
    path = repo / CONFIG_FILE
    try:
        if path.exists():
            data = tomllib.loads(path.read_text())
        elif pyproject.exists():
            data = tomllib.loads(pyproject.read_text()).get("tool", {}).get("autoresearch_nb", {})
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path if path.exists() else pyproject} is not valid TOML: {e}") from None
    return data


def make_config(repo: Path, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the repo's config file, then ``overrides`` (None values are ignored)."""
    merged: dict[str, Any] = {}
    for source in (read_config_file(repo), overrides or {}):
        for name, value in source.items():
            if value is None:
                continue
            if _SECRET_NAME.search(name):
                raise ConfigError(
                    f"refusing setting {name!r}: secrets are read from the environment only "
                    "(set ANTHROPIC_API_KEY before starting Jupyter or the CLI), never passed as parameters")
            merged[name] = coerce(name, value)
    try:
        return Config(**merged)
    except TypeError as e:
        raise ConfigError(str(e)) from None


_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL", "CREDENTIALS",
                 "AUTH", "COOKIE", "SESSION"}


def looks_secret(name: str) -> bool:
    """True for environment variable names that look like credentials.

    Judged by whole words of the name (``HF_TOKEN``, ``ANTHROPIC_API_KEY``, ``DB_PASSWORD``), so that
    ``TOKENIZERS_PARALLELISM`` or ``KEYBOARD`` pass; anything ``AWS_*`` is withheld too.
    """
    words = set(re.split(r"[^A-Za-z0-9]+", name.upper()))
    return bool(words & _SECRET_WORDS) or name.upper().startswith("AWS_") or name.upper().endswith("KEY")


def with_overrides(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, **{k: coerce(k, v) for k, v in changes.items()})


__all__ = ["Config", "make_config", "config_names", "coerce", "looks_secret", "CONFIG_FILE"]
