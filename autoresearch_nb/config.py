"""The loop's configuration, its one settings channel. Field names are the notebook's parameter names and the
CLI's flags (``time_budget_s`` <-> ``-p time_budget_s 60`` <-> ``--time-budget-s 60`` or ``--time-budget 60``);
each field carries its one-line help, from which the CLI builds its flags. The environment holds secrets only
(``ANTHROPIC_API_KEY``); the ``AUTORESEARCH_*`` variables are what the loop passes *to a run*.

A research repo may keep defaults in ``autoresearch.toml`` at its root (a flat table of these names, or a
``[tool.autoresearch_nb]`` table in ``pyproject.toml``). Precedence: explicit arguments > config file > defaults.
"""
from __future__ import annotations

import dataclasses
import math
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from . import layout
from .errors import ConfigError

CONFIG_FILE = "autoresearch.toml"
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential)", re.I)


def setting(default: Any, help: str) -> Any:
    """A :class:`Config` field with its one-line help (shown by ``autoresearch-nb run --help``)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Everything that defines a run's target, its limits and its agent. Each field's help is in its metadata
    (``Config.help()``); the environment holds only secrets (``ANTHROPIC_API_KEY``)."""

    # the target
    editable: str = setting("train.py", "the only file the agent may change (a path inside the repo)")
    command: str = setting("python train.py", "how to run one experiment, in its worktree; it must print the "
                                              "'---' summary")
    metric: str = setting("val_bpb", "the summary key to optimize")
    direction: str = setting("minimize", "'minimize' or 'maximize' the metric")
    record: tuple[str, ...] = setting(("peak_memory_mb",), "other summary keys shown as table columns "
                                                           "(comma-separated)")
    memory_key: str = setting("peak_memory_mb", "the summary key (MB) behind results.tsv's memory_gb column")
    # verification (autoresearch_nb.verify): the loop, not the experiment, produces the number it decides on
    verify: str | None = setting("auto", "a command run after each experiment in its run directory whose '---' "
                                         "summary gives the metric; the run's printed number becomes a "
                                         "cross-check. 'model': the built-in verifier of the harness's exported "
                                         "model; 'auto' (default): 'model' for a harness train.py, else off; "
                                         "'off': the run's own number")
    verify_tolerance: float = setting(0.005, "a run whose printed metric differs from the verified one by more "
                                             "than this (relative) is 'tampered'")
    guard: str | None = setting(None, "a command run after each clean experiment in its run directory that must "
                                      "exit 0 for a keep (e.g. the project's tests); else 'guard_failed'")
    budget_tolerance: float = setting(0.1, "a run that trains past the time budget by more than this share "
                                           "(the harness's clock) is 'over_budget'")
    keep_artifacts: int = setting(3, "exported models (verify = 'model') kept per run: the newest this many, "
                                     "plus the best experiment's; older ones are deleted after each verification")
    # limits of one run
    time_budget_s: float = setting(300.0, "seconds of training per experiment on the budget clock (passed to "
                                          "the run as AUTORESEARCH_TIME_BUDGET; on a CPU, CPU seconds per "
                                          "thread: see budget_clock)")
    budget_clock: str = setting("auto", "what a second of the budget is: 'wall', or 'cpu' (CPU seconds per "
                                        "thread given, the whole process tree, measured by the loop: the step "
                                        "count no longer depends on other processes); 'auto': on a CPU device "
                                        "flops for a harness train.py that reports its work (H.work), cpu for "
                                        "one that does not, else wall; 'flops': a work budget, model "
                                        "FLOPs as train.py reports them (H.work; one budget second is "
                                        "AUTORESEARCH_WORK_RATE FLOPs), the loop bounding the CPU a run takes "
                                        "(3x). The hard timeout counts on it too")
    budget_overhead_s: float | None = setting(None, "seconds on the budget clock a run may use besides "
                                                    "training (start-up, evaluation) before the loop's own "
                                                    "measure makes it 'over_budget' (default: the larger of "
                                                    "15 s and half the budget)")
    prune: str = setting("auto", "stop a run whose curve stays clearly worse than the best's at the same "
                                 "progress (recorded 'pruned', never kept): 'auto' (harness runs, once the "
                                 "baseline's noise repeats give the spread) or 'off'")
    prune_margin: float = setting(3.0, "how far above the best's curve (in σ of the baseline repeats' curves "
                                       "at that progress) a run must stay to be pruned")
    prune_min_progress: float = setting(0.2, "no run is pruned before this share of its budget")
    timeout_s: float | None = setting(None, "hard kill of one run after this many seconds on the budget clock "
                                            "(default: twice the budget, at least budget + 60; on the cpu "
                                            "clock the wall time is capped at 3x this)")
    seed: int | None = setting(None, "base seed passed to each run as AUTORESEARCH_SEED")
    setup: str | None = setting(None, "a command run once per session before the first experiment "
                                      "(data, tokenizer)")
    env_allow: tuple[str, ...] = setting((), "secret-looking environment variables a run may still see "
                                             "(comma-separated)")
    # the boundary around every run (autoresearch_nb.sandbox): paths relative to the repo
    sandbox: str = setting("auto", "'auto' (the strongest that works here: bubblewrap with Landlock inside, "
                                   "Landlock alone on a GPU machine or where bubblewrap fails; said at start), "
                                   "'bubblewrap' (required), 'landlock' (required, no bubblewrap) or 'none'")
    sandbox_write: tuple[str, ...] = setting((), "extra paths a run may write (comma-separated; never the "
                                                 "checkout, a .git or $HOME itself)")
    sandbox_read: tuple[str, ...] = setting((), "extra paths a run may read (comma-separated; a target's data "
                                                "folder)")
    sandbox_include: tuple[str, ...] = setting((), "untracked repo paths (data, a venv) linked read-only into "
                                                   "each run directory (comma-separated)")
    sandbox_network: bool = setting(False, "let experiments open TCP connections (the setup command always "
                                           "may: it downloads data)")
    sandbox_memory_mb: int | None = setting(None, "address-space cap of one run in MB (default: off; CUDA "
                                                  "reserves far more than it uses)")
    sandbox_file_mb: int | None = setting(10240, "largest file a run may write, in MB (a bigger write is a "
                                                 "crash row)")
    log_cap_mb: int = setting(64, "a run's log keeps its first and last half of this many MB (the cut is said "
                                   "in the row)")
    min_free_mb: int = setting(1024, "free disk (MB) needed before each run; less is a failed row and the "
                                     "loop stops")
    disk_floor_mb: int = setting(256, "free disk (MB) kept during a run (checked every second): a run that "
                                      "fills the disk past it is stopped, its row says why, the loop stops "
                                      "(the store must be able to write that row); at most min_free_mb")
    # the whole run
    max_experiments: int | None = setting(None, "stop when the run holds this many experiments, baseline "
                                                "included")
    workers: int = setting(1, "experiments at once (one GPU or a share of the cores each)")
    executor: str = setting("local", "'local' (subprocesses) or 'ray' (tasks on a Ray cluster)")
    lookahead: str = setting("auto", "with one worker, ask the agent for the next experiment while one runs: "
                                     "'1' always, '0' never, 'auto' when proposals take over 2 percent of a run")
    ray_address: str | None = setting(None, "the Ray cluster to join ('auto' or 'ray://...'; default: start "
                                            "a local one)")
    # overnight: the stall watchdog, a notification, housekeeping (autoresearch-nb gc)
    stall_minutes: float | None = setting(None, "kill a run that prints nothing, not even a progress redraw, for "
                                                "this many minutes; recorded as a timeout, 'stalled' (default: "
                                                "off)")
    notify: str | None = setting(None, "a command run when the loop finishes or crashes, or a run stalls; the "
                                       "event is on its stdin, in AUTORESEARCH_NOTIFY_* variables and in "
                                       "{event}, {tag}, {message} placeholders")
    gc_keep_last: int = setting(5, "autoresearch-nb gc keeps the logs and commits of each finished run's last "
                                   "N experiments (kept experiments always stay)")
    gc_keep_days: float = setting(7.0, "autoresearch-nb gc keeps whatever ended less than this many days ago")
    # the agents
    program: str = setting("program.md", "the human's research instructions for the agent")
    queue_file: str = setting("queue.toml", "the queue agent's list of experiments (TOML or JSON)")
    model: str | None = setting(None, "the Claude agent's model (default claude-sonnet-5-5)")
    effort: str | None = setting(None, "the Claude agent's effort ('low', 'medium', 'high'; default: the "
                                       "model's)")
    max_tokens: int = setting(16000, "the Claude agent's output tokens per call")
    max_cost_usd: float | None = setting(None, "stop before the agent's calls cost more than this many dollars")
    max_repairs: int = setting(2, "turns the agent gets to repair an edit that does not apply")
    sdk_max_retries: int = setting(2, "retries of one call inside the Anthropic SDK")
    backoff_base_s: float = setting(5.0, "first wait after an overloaded, rate-limited or failed call")
    backoff_max_s: float = setting(120.0, "longest single wait between calls")
    backoff_total_s: float = setting(900.0, "give up on the agent after waiting this long in total")
    prices_file: str | None = setting(None, "a JSON or TOML table of USD per million tokens, over the "
                                            "built-in prices")
    # decisions under noise (autoresearch_nb.noise); repeat i of a commit runs with seed `seed + i`
    noise_repeats: int = setting(3, "baseline runs that measure the noise floor sigma (1: none)")
    noise_k: float = setting(2.0, "keep only improvements past k sigma of the noise (0: keep iff better)")
    decision: str = setting("paired", "'paired': a candidate runs at the best's seeds, one at a time, and is "
                                      "judged on the differences (autoresearch_nb.paired); 'unpaired': its "
                                      "mean against the best's, with confirmations (noise_k, confirm_*)")
    keep_alpha: float = setting(0.05, "paired rule: the false-keep rate of a null change over its whole "
                                      "sequence of paired seeds")
    max_seeds: int = setting(5, "paired rule: the most paired seeds one candidate gets")
    futility: float = setting(1.5, "paired rule: how many standard errors under the path of a just-"
                                   "detectable gain a candidate may fall before it stops")
    combine_after: int = setting(8, "after this many decided experiments without a keep, the next proposal "
                                    "combines the best near-misses (discarded changes whose mean improved) on "
                                    "the current best, instead of the agent's (0: off)")
    confirm_runs: int = setting(1, "extra runs (other seeds) for a pass that is only marginal")
    confirm_margin: float = setting(1.0, "passes by less than this many sigma over the threshold are "
                                         "confirmed")
    confirm_below: float = setting(1.0, "near misses, better but under the threshold by less than this many "
                                        "sigma, are confirmed too (0: off)")
    revalidate_every: int | None = setting(None, "re-run the best after every N keeps and report drift")
    holdout_tolerance: float = setting(0.02, "without a noise floor (noise_k = 0), how much worse than the "
                                             "best's a keep's holdout bpb or holdout gap may be before it is "
                                             "'overfit' (with a floor: the noise threshold)")

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{setting: one-line help}``, in declaration order."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def settings_from(cls, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """The settings a namespace gives: its names that are fields, without ``None`` (= the repo's config
        file, then the default), each coerced and checked. A notebook's parameters cell becomes the loop's
        settings in one call, so a new setting cannot be forgotten on the way::

            >>> loop = Loop.open(repo, tag=tag, agent=agent, **Config.settings_from(globals()))  # doctest: +SKIP
        """
        names = set(config_names())
        out = {name: coerce(name, value) for name, value in namespace.items()
               if name in names and value is not None}
        cls(**out)  # each value checked now, where the notebook can still show which parameter is wrong
        return out

    def __post_init__(self) -> None:
        for name in _NUMBERS:
            value = getattr(self, name)
            # nan passes every comparison below, and inf disables a timeout: neither is a setting.
            if value is not None and not math.isfinite(float(value)):
                raise ConfigError(f"{name} must be a finite number, not {value!r}")
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"direction must be 'minimize' or 'maximize', not {self.direction!r}")
        if not self.editable or Path(self.editable).is_absolute() or ".." in Path(self.editable).parts:
            raise ConfigError(f"editable must be a path inside the repo, not {self.editable!r}")
        if self.time_budget_s is None or float(self.time_budget_s) <= 0:
            raise ConfigError(f"time_budget_s must be > 0, not {self.time_budget_s!r}")
        if str(self.prune).strip().lower() not in ("auto", "off"):
            raise ConfigError(f"prune must be 'auto' or 'off', not {self.prune!r}")
        if not float(self.prune_margin) > 0 or not 0 <= float(self.prune_min_progress) < 1:
            raise ConfigError("prune_margin must be > 0 and prune_min_progress between 0 and 1 (excluded)")
        if str(self.budget_clock).strip().lower() not in ("auto", "wall", "cpu", "flops"):
            raise ConfigError(f"budget_clock must be 'auto', 'wall', 'cpu' or 'flops', not {self.budget_clock!r}")
        if self.budget_overhead_s is not None and not float(self.budget_overhead_s) >= 0:
            raise ConfigError(f"budget_overhead_s must be >= 0, not {self.budget_overhead_s!r}")
        if self.timeout_s is not None and float(self.timeout_s) <= 0:
            raise ConfigError(f"timeout_s must be > 0, not {self.timeout_s!r}")
        object.__setattr__(self, "lookahead", str(self.lookahead).strip().lower())  # 1 from a notebook is "1"
        if self.lookahead not in ("0", "1", "auto"):
            raise ConfigError(f"lookahead must be 0, 1 or 'auto', not {self.lookahead!r}")
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
        object.__setattr__(self, "decision", str(self.decision).strip().lower())
        if self.decision not in ("paired", "unpaired"):
            raise ConfigError(f"decision must be 'paired' or 'unpaired', not {self.decision!r}")
        if not 0 < float(self.keep_alpha) < 1 or int(self.max_seeds) < 2 or float(self.futility) < 0:
            raise ConfigError("keep_alpha must be in (0, 1), max_seeds >= 2 and futility >= 0")
        if int(self.combine_after) < 0:
            raise ConfigError(f"combine_after must be >= 0 (0: off), not {self.combine_after!r}")
        if self.revalidate_every is not None and int(self.revalidate_every) < 1:
            raise ConfigError(f"revalidate_every must be >= 1 or None, not {self.revalidate_every!r}")
        if int(self.max_tokens) < 1 or int(self.sdk_max_retries) < 0 or int(self.max_repairs) < 0:
            raise ConfigError("max_tokens must be >= 1, sdk_max_retries and max_repairs >= 0")
        if min(float(self.backoff_base_s), float(self.backoff_max_s), float(self.backoff_total_s)) < 0:
            raise ConfigError("backoff_base_s, backoff_max_s and backoff_total_s must be >= 0")
        if self.stall_minutes is not None and float(self.stall_minutes) <= 0:
            raise ConfigError(f"stall_minutes must be > 0 or None (off), not {self.stall_minutes!r}")
        if self.notify is not None:
            try:
                if not shlex.split(self.notify):
                    raise ValueError("it is empty")
            except ValueError as e:
                raise ConfigError(f"notify command {self.notify!r} cannot be parsed: {e}") from None
        if int(self.gc_keep_last) < 0 or float(self.gc_keep_days) < 0:
            raise ConfigError("gc_keep_last and gc_keep_days must be >= 0")
        if float(self.verify_tolerance) < 0 or float(self.budget_tolerance) < 0 or int(self.keep_artifacts) < 0:
            raise ConfigError("verify_tolerance, budget_tolerance and keep_artifacts must be >= 0")
        for name in ("verify", "guard"):
            value = getattr(self, name)
            try:
                words = shlex.split(value) if value else []
            except ValueError as e:
                raise ConfigError(f"{name} command {value!r} cannot be parsed: {e}") from None
            if self.editable in words and name == "verify":  # the verifier must not be the file under test
                raise ConfigError(f"verify must run from a fixed file, not the editable {self.editable!r}")
        if self.sandbox not in ("auto", "bubblewrap", "landlock", "none"):
            raise ConfigError(f"sandbox must be 'auto', 'bubblewrap', 'landlock' or 'none', not {self.sandbox!r}")
        if not isinstance(self.sandbox_network, bool):
            raise ConfigError(f"sandbox_network must be true or false, not {self.sandbox_network!r}")
        for name in ("sandbox_memory_mb", "sandbox_file_mb"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(f"{name} must be >= 1 or None (off), not {value!r}")
        if int(self.log_cap_mb) < 1:
            raise ConfigError(f"log_cap_mb must be >= 1, not {self.log_cap_mb!r}")
        if int(self.min_free_mb) < 0:
            raise ConfigError(f"min_free_mb must be >= 0, not {self.min_free_mb!r}")
        if not 0 <= int(self.disk_floor_mb) <= max(int(self.min_free_mb), 0) and int(self.disk_floor_mb) != 0:
            raise ConfigError(f"disk_floor_mb must be between 0 and min_free_mb ({self.min_free_mb}), not "
                              f"{self.disk_floor_mb!r}")
        if self.max_cost_usd is not None and float(self.max_cost_usd) < 0:
            raise ConfigError(f"max_cost_usd must be >= 0, not {self.max_cost_usd!r}")

    @property
    def hard_timeout_s(self) -> float:
        if self.timeout_s is not None:
            return float(self.timeout_s)
        # 2x the budget, but never less than a minute over it: imports, compilation and evaluation
        # happen outside the training budget and a small budget must not turn them into timeouts.
        return max(2.0 * float(self.time_budget_s), float(self.time_budget_s) + 60.0)

    @property
    def stall_s(self) -> float | None:
        """The stall watchdog in seconds (the runner's ``stall_s``), or None when off."""
        return None if self.stall_minutes is None else 60.0 * float(self.stall_minutes)

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


_NUMBERS = tuple(name for name, hint in get_type_hints(Config).items() if "float" in str(hint) or "int" in str(hint))


_FIELDS = frozenset(f.name for f in fields(Config))


def reference_markdown() -> str:
    """``docs/configuration.md``: every setting with its CLI flag, default and help, generated from
    :class:`Config` so the page cannot drift from the code (``python -m autoresearch_nb.config`` prints it;
    tests/test_config.py fails when the committed page differs)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["# Configuration", "",
             "<!-- generated by `python -m autoresearch_nb.config > docs/configuration.md`: do not edit -->", "",
             "Every setting has one name everywhere: a flag of `autoresearch-nb run`, a key of `autoresearch.toml` at "
             "the repository's root, a keyword of `Loop.open(...)` and a parameter of the shipped notebook. An "
             "explicit value wins over the file, the file over the default; a resumed run starts from its stored "
             "settings. The environment holds only secrets (`ANTHROPIC_API_KEY`).", "",
             "| setting | flag | default | what it does |", "|---|---|---|---|"]
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        shown = "" if default is None or default == "" else f"`{default}`"
        lines.append(f"| `{f.name}` | `{flag}` | {cell(shown)} | {cell(f.metadata['help'])} |")
    return "\n".join(lines) + "\n"


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
    if "bool" in hint:
        return _boolean(name, value)
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


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(name: str, value: Any) -> bool:
    # bool("false") is True: a flag or a papermill string must be read, not cast
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name} must be true or false, not {value!r}")


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
            check_parameters([name])
            merged[name] = coerce(name, value)
    try:
        return Config(**merged)
    except TypeError as e:
        raise ConfigError(str(e)) from None


def check_parameters(names: Iterable[str]) -> None:
    """Raise :class:`ConfigError` for a setting or notebook parameter named like a secret (``api_key``,
    ``hf_token``): keys are read from the environment only. The notebook calls it on its parameters."""
    for name in names:
        if not name.startswith("_") and name not in _FIELDS and _SECRET_NAME.search(name):  # max_tokens is a setting
            raise ConfigError(
                f"refusing setting {name!r}: secrets are read from the environment only "
                "(set ANTHROPIC_API_KEY before starting Jupyter or the CLI), never passed as parameters")


_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL", "CREDENTIALS",
                 "AUTH", "COOKIE", "SESSION"}
# Names those rules would catch that hold paths or settings, never a secret: the shell's working directory (its
# value, a path, was redacted from every log) and AWS's non-credential settings.
_NOT_SECRET = frozenset({"PWD", "OLDPWD", "AWS_CA_BUNDLE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                         "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_DEFAULT_OUTPUT",
                         "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_EC2_METADATA_DISABLED"})


def looks_secret(name: str) -> bool:
    """True for environment variable names that look like credentials.

    Judged by whole words of the name (``HF_TOKEN``, ``ANTHROPIC_API_KEY``, ``DB_PASSWORD``), so that
    ``TOKENIZERS_PARALLELISM`` or ``KEYBOARD`` pass; anything ``AWS_*`` is withheld too.
    """
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    words = set(re.split(r"[^A-Za-z0-9]+", upper))
    return bool(words & _SECRET_WORDS) or upper.startswith("AWS_") or upper.endswith("KEY")




def check_tag(tag: str | None) -> str:
    """``tag`` (today's date, ``nov27``, when None) when it can name a run, else :class:`ConfigError`: the
    one tag rule (:func:`.layout.check_tag`), for the CLI, ``Loop.open`` and the notebook alike.

    >>> check_tag("nov27")
    'nov27'
    """
    try:
        return layout.check_tag(tag)
    except layout.TagError as e:
        raise ConfigError(str(e)) from None


def with_overrides(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, **{k: coerce(k, v) for k, v in changes.items()})


__all__ = ["Config", "make_config", "config_names", "coerce", "looks_secret", "check_tag", "check_parameters",
           "setting", "CONFIG_FILE"]


if __name__ == "__main__":
    print(reference_markdown(), end="")
