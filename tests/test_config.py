# python -m pytest tests/test_config.py -q
"""Configuration: defaults, the repo's config file, overrides, coercion of strings, refusals."""
from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch_nb.config import Config, check_tag, coerce, looks_secret, make_config, with_overrides
from autoresearch_nb.errors import ConfigError


def write(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)


# -- sources and precedence ---------------------------------------------------------------------------------

def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert (cfg.editable, cfg.command, cfg.metric, cfg.direction, cfg.time_budget_s) == \
        ("train.py", "python train.py", "val_bpb", "minimize", 300.0)


def test_default_hard_timeout_is_twice_the_budget(tmp_path: Path) -> None:
    assert make_config(tmp_path).hard_timeout_s == 600.0


def test_small_budget_gets_a_minute_of_slack(tmp_path: Path) -> None:
    assert make_config(tmp_path, {"time_budget_s": 10}).hard_timeout_s == 70.0


def test_explicit_timeout_wins(tmp_path: Path) -> None:
    assert make_config(tmp_path, {"timeout_s": 5}).hard_timeout_s == 5.0


def test_autoresearch_toml_is_read(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'metric = "render_ms"\ncommand = "python bench.py"\n'
                                         'record = ["p99_ms"]\n')
    cfg = make_config(tmp_path)
    assert (cfg.metric, cfg.command, cfg.record) == ("render_ms", "python bench.py", ("p99_ms",))


def test_pyproject_tool_table_is_read(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n\n[tool.autoresearch_nb]\n'
                                      'direction = "maximize"\ntime_budget_s = 60\n')
    cfg = make_config(tmp_path)
    assert (cfg.direction, cfg.time_budget_s) == ("maximize", 60.0)


def test_pyproject_without_our_table_gives_defaults(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    assert make_config(tmp_path) == Config()


def test_autoresearch_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'metric = "from_toml"\n')
    write(tmp_path, "pyproject.toml", '[tool.autoresearch_nb]\nmetric = "from_pyproject"\n')
    assert make_config(tmp_path).metric == "from_toml"


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'metric = "from_file"\ntime_budget_s = 60\n')
    cfg = make_config(tmp_path, {"metric": "from_flag"})
    assert (cfg.metric, cfg.time_budget_s) == ("from_flag", 60.0)


def test_none_overrides_leave_the_file_value(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'metric = "from_file"\n')
    assert make_config(tmp_path, {"metric": None}).metric == "from_file"


# -- coercion of strings (CLI flags, papermill parameters) ---------------------------------------------------------

def test_strings_become_the_fields_types(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"time_budget_s": "60", "max_experiments": "5", "seed": "7",
                                 "max_cost_usd": "2.5"})
    assert (cfg.time_budget_s, cfg.max_experiments, cfg.seed, cfg.max_cost_usd) == (60.0, 5, 7, 2.5)
    assert type(cfg.max_experiments) is int and type(cfg.time_budget_s) is float


def test_comma_separated_string_becomes_a_tuple() -> None:
    assert coerce("record", "peak_memory_mb, mfu_percent,") == ("peak_memory_mb", "mfu_percent")


def test_list_becomes_a_tuple() -> None:
    assert coerce("env_allow", ["HF_TOKEN"]) == ("HF_TOKEN",)


def test_none_string_clears_an_optional_number() -> None:
    assert coerce("timeout_s", "None") is None


def test_none_string_is_a_plain_string_for_a_text_field() -> None:
    assert coerce("metric", "none") == "none"


def test_integer_valued_float_string_is_an_int() -> None:
    assert coerce("max_experiments", "3.0") == 3


def test_non_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="time_budget_s must be a number, not 'fast'"):
        coerce("time_budget_s", "fast")


def test_fractional_float_for_an_int_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_experiments must be a whole number"):
        coerce("max_experiments", 2.5)


def test_fractional_string_for_an_int_is_refused() -> None:
    with pytest.raises(ConfigError):
        coerce("max_experiments", "2.5")


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'time_budget'; known: editable"):
        make_config(tmp_path, {"time_budget": "60"})


def test_with_overrides_coerces() -> None:
    assert with_overrides(Config(), time_budget_s="30").time_budget_s == 30.0


# -- refusals ---------------------------------------------------------------------------------------------------

def test_bad_direction_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="direction must be 'minimize' or 'maximize', not 'lower'"):
        make_config(tmp_path, {"direction": "lower"})


def test_bad_toml_is_refused_with_the_file_name(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'metric = "unclosed\n')
    with pytest.raises(ConfigError, match=r"autoresearch.toml is not valid TOML"):
        make_config(tmp_path)


def test_bad_pyproject_is_refused_with_the_file_name(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.autoresearch_nb\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml is not valid TOML"):
        make_config(tmp_path)


@pytest.mark.parametrize("name", ["api_key", "anthropic_api_key", "hf_token", "db_password", "aws_secret"])
def test_secret_looking_setting_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=f"refusing setting '{name}'"):
        make_config(tmp_path, {name: "sk-123"})


def test_secret_in_the_config_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "autoresearch.toml", 'anthropic_api_key = "sk-ant-123"\n')
    with pytest.raises(ConfigError, match="secrets are read from the environment only"):
        make_config(tmp_path)


@pytest.mark.parametrize("editable", ["/etc/passwd", "../outside.py", ""])
def test_editable_outside_the_repo_is_refused(editable: str) -> None:
    with pytest.raises(ConfigError, match="editable must be a path inside the repo"):
        Config(editable=editable)


@pytest.mark.parametrize("budget", [0, -5])
def test_non_positive_budget_is_refused(budget: float) -> None:
    with pytest.raises(ConfigError, match="time_budget_s must be > 0"):
        Config(time_budget_s=budget)


@pytest.mark.parametrize("name", ["time_budget_s", "timeout_s", "noise_k", "max_cost_usd", "backoff_total_s"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309"])
def test_a_non_finite_number_is_refused(tmp_path: Path, name: str, value: str) -> None:
    # nan passes every `<= 0` check, and an infinite timeout silently disables the hard kill.
    with pytest.raises(ConfigError, match=f"{name} must be a finite number"):
        make_config(tmp_path, {name: value})


@pytest.mark.parametrize("timeout", [0, -1])
def test_non_positive_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        Config(timeout_s=timeout)


def test_unparsable_command_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be parsed"):
        Config(command="python 'train.py")


def test_empty_command_is_refused() -> None:
    with pytest.raises(ConfigError, match="command is empty"):
        Config(command="  ")


# -- direction ----------------------------------------------------------------------------------------------------

def test_better_when_minimizing() -> None:
    assert Config().better(0.9, 1.0) and not Config().better(1.0, 1.0)


def test_better_when_maximizing() -> None:
    cfg = Config(direction="maximize")
    assert cfg.better(1.1, 1.0) and not cfg.better(0.9, 1.0)


def test_anything_beats_no_metric() -> None:
    assert Config().better(1e9, None)


# -- secret-looking environment variables ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "MY_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                                  "GITHUB_TOKEN", "OPENAI_API_KEY", "STRIPE_SECRET", "GCP_CREDENTIALS", "DB_PWD",
                                  "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"])
def test_secret_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "LANG",
                                  "AUTORESEARCH_TIME_BUDGET", "PWD", "OLDPWD", "AWS_CA_BUNDLE", "AWS_REGION"])
def test_ordinary_names(name: str) -> None:
    assert not looks_secret(name)


def test_tokenizers_parallelism_is_not_a_secret() -> None:
    assert not looks_secret("TOKENIZERS_PARALLELISM")


# -- one place for every setting: help, notebook parameters, the agents' settings -----------------------------------

def test_every_setting_has_a_one_line_help() -> None:
    helps = Config.help()
    assert list(helps) == [f for f in Config.__dataclass_fields__]
    for name, text in helps.items():
        assert text.strip() and "\n" not in text and not text.startswith("(config"), name


def test_agent_settings_are_fields_not_secrets(tmp_path: Path) -> None:
    # max_tokens has "token" in its name; it is a setting, not a credential.
    cfg = make_config(tmp_path, {"max_tokens": "2048", "sdk_max_retries": "0", "backoff_base_s": "0.5",
                                 "prices_file": "prices.toml"})
    assert (cfg.max_tokens, cfg.sdk_max_retries, cfg.backoff_base_s, cfg.prices_file) == \
        (2048, 0, 0.5, "prices.toml")


def test_settings_from_a_namespace_takes_the_settings_and_drops_none() -> None:
    namespace = {"time_budget_s": "60", "metric": None, "record": ["a", "b"], "tag": "nov27", "n": 3,
                 "display": "auto", "ANTHROPIC_API_KEY": "sk-x"}
    assert Config.settings_from(namespace) == {"time_budget_s": 60.0, "record": ("a", "b")}


def test_settings_from_a_namespace_refuses_a_bad_value() -> None:
    with pytest.raises(ConfigError, match="timeout_s must be a finite number"):
        Config.settings_from({"timeout_s": float("nan")})


def test_the_notebook_parameters_cell_becomes_settings_in_one_call() -> None:
    import json

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "autoresearch.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    named = {k for k in namespace if k in Config.__dataclass_fields__}
    settings = Config.settings_from(namespace)
    assert named and set(settings) == {k for k in named if namespace[k] is not None}


# -- tags -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["nov27", "exp-1.b", "A_2"])
def test_good_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["a..b", "x.lock", "end.", ".hidden", "-x", "a/b", "sp ace", "", "x" * 65, "a@{b"])
def test_tags_git_cannot_use_are_refused(tag: str) -> None:
    with pytest.raises(ConfigError, match="tag"):
        check_tag(tag)


# -- overnight settings -------------------------------------------------------------------------------------------

def test_stall_watchdog_is_off_by_default_and_given_in_minutes(tmp_path: Path) -> None:
    assert make_config(tmp_path).stall_s is None
    write(tmp_path, "autoresearch.toml", "stall_minutes = 20\n")
    assert make_config(tmp_path).stall_s == 1200.0
    assert make_config(tmp_path, {"stall_minutes": "0.5"}).stall_s == 30.0


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_non_positive_stall_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="stall_minutes must be > 0"):
        make_config(tmp_path, {"stall_minutes": value})


@pytest.mark.parametrize("command", ["", "echo 'unclosed"])
def test_an_empty_or_unparsable_notify_command_is_refused(command: str) -> None:
    with pytest.raises(ConfigError, match="notify command"):
        Config(notify=command)


def test_gc_retention_must_not_be_negative(tmp_path: Path) -> None:
    assert make_config(tmp_path, {"gc_keep_last": "2", "gc_keep_days": "0.5"}).gc_keep_last == 2
    with pytest.raises(ConfigError, match="gc_keep_last"):
        make_config(tmp_path, {"gc_keep_last": "-1"})


@pytest.mark.parametrize("value, expected", [(0, "0"), (1, "1"), ("AUTO", "auto"), ("1", "1")])
def test_lookahead_takes_0_1_or_auto(value, expected) -> None:
    assert Config(lookahead=value).lookahead == expected


@pytest.mark.parametrize("value", [2, "yes", True])
def test_another_lookahead_is_refused(value) -> None:
    with pytest.raises(ConfigError, match="lookahead must be 0, 1 or 'auto'"):
        Config(lookahead=value)


def test_the_configuration_page_is_generated_from_config_and_current() -> None:
    """docs/configuration.md cannot drift: it is what reference_markdown() prints (regenerate with
    `python -m autoresearch_nb.config > docs/configuration.md`)."""
    from dataclasses import fields

    from autoresearch_nb.config import reference_markdown
    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert page == reference_markdown(), "docs/configuration.md is stale: regenerate it"
    for f in fields(Config):
        assert f"| `{f.name}` | `--{f.name.replace('_', '-')}` |" in page
