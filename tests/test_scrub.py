# Run: python -m pytest tests/test_scrub.py -q
"""Secrets by name and by value (fault 12): out of a run's environment, out of logs and text written down."""
from __future__ import annotations

import subprocess
import sys

import pytest

from autoresearch_nb import config
from autoresearch_nb.scrub import MASK, Redactor, looks_secret, looks_secret_value, redact, scrub_env

ENV = {
    "PATH": "/usr/bin:/bin",
    "DATABASE_URL": "postgres://user:password@host/db",     # secret by value only
    "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyzABCDEF",      # by name and by value
    "MY_SETTING": "sk-ant-" + "api03-0123456789abcdefghij",     # by value only
    "SHORT_TOKEN": "abc",                                   # by name; too short to redact in text
    "TOKENIZERS_PARALLELISM": "false",
    "PIP_INDEX_URL": "https://pypi.org/simple",
}


def test_secrets_are_withheld_by_name_and_by_value():
    clean = scrub_env(ENV)
    assert clean.withheld == ("DATABASE_URL", "HF_TOKEN", "MY_SETTING", "SHORT_TOKEN")
    assert set(clean.env) == {"PATH", "TOKENIZERS_PARALLELISM", "PIP_INDEX_URL"}
    assert "password" not in repr(clean)


def test_allow_and_extra():
    clean = scrub_env(ENV, allow=("DATABASE_URL",), extra={"AUTORESEARCH_SEED": "3"})
    assert clean.env["DATABASE_URL"] == ENV["DATABASE_URL"] and clean.env["AUTORESEARCH_SEED"] == "3"
    assert "DATABASE_URL" not in clean.withheld


@pytest.mark.parametrize("value", [
    "mysql://root:s3cr3tpass@10.0.0.1:3306/x", "https://user:tok@github.com/x.git", "ghp_" + "a1" * 18,
    "github_pat_" + "A1_" * 10, "xoxb-1234567890-abcdef", "AKIAIOSFODNN7EXAMPLE", "glpat-abcdefghij0123456789",
    "AIza" + "B" * 35, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n",
])
def test_credential_shapes_are_secret_values(value):
    assert looks_secret_value(value)
    assert MASK in redact(f"before {value} after")


@pytest.mark.parametrize("value", ["https://pypi.org/simple", "false", "/usr/bin:/bin", "ssh://git@github.com/x",
                                   "task-runner-12345678", "skeleton", "en_US.UTF-8"])
def test_ordinary_values_are_not(value):
    assert not looks_secret_value(value)
    assert redact(f"before {value} after") == f"before {value} after"


def test_redact_removes_every_long_withheld_value_and_keeps_short_ones():
    clean = scrub_env(ENV)
    text = "\n".join(f"{k}={v}" for k, v in ENV.items())
    out = redact(text, clean.secrets)
    for value in ("password", "hf_abcdefghij", "sk-ant-api03", "postgres://user"):
        assert value not in out
    assert "SHORT_TOKEN=abc" in out and "TOKENIZERS_PARALLELISM=false" in out


def test_redactor_catches_a_secret_split_across_reads():
    secret = "correct-horse-battery-staple"
    r = Redactor([secret])
    out = b"".join([r.feed(b"step 1\rpw: correct-horse-"), r.feed(b"battery-staple\nnext line\n"), r.flush()])
    assert secret.encode() not in out and out.count(MASK.encode()) == 1
    assert out.startswith(b"step 1\rpw: ") and out.endswith(b"next line\n")


def test_a_run_sees_no_secret_and_its_log_shows_none(tmp_path):
    # Fault 12: DATABASE_URL reached the run and its log. A real child prints its whole environment, and what
    # it was handed on the command line (as if read from a file), through the log redactor.
    clean = scrub_env({**ENV, "SYSTEMROOT": "x"})
    code = "import os, sys; print(sorted(os.environ.items())); print('argv', sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, ENV["DATABASE_URL"], ENV["HF_TOKEN"]], env=clean.env,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    r = Redactor(clean.secrets)
    log = tmp_path / "run.log"
    log.write_bytes(r.feed(proc.stdout) + r.flush())
    text = log.read_text()
    assert "DATABASE_URL" not in text.split("argv")[0]
    for name in clean.withheld:
        if len(ENV[name]) >= 8:
            assert ENV[name] not in text
    assert text.count(MASK) == 2


def test_config_looks_secret_still_works():
    assert config.looks_secret is looks_secret
    assert looks_secret("ANTHROPIC_API_KEY") and not looks_secret("TOKENIZERS_PARALLELISM")
