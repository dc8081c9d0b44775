# loaded by .ci/run: AUTORESEARCH_NB_STRICT_SKIPS=1 python -m pytest -p tests.strict_skips
"""In CI a skipped browser, Ray or bubblewrap test fails the run: a skip there means the promise went unchecked.

With ``AUTORESEARCH_NB_STRICT_SKIPS=1``, a skipped test (or a skipped module) fails when its file is
``tests/test_browser.py`` or its skip reason mentions ray, chromium, playwright or bubblewrap, and the terminal
summary says
why, one line per test. An expected failure (xfail) is not a skip. Without the variable the plugin does nothing,
so ``pytest -p tests.strict_skips`` is safe on a laptop with no Chromium.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ENV = "AUTORESEARCH_NB_STRICT_SKIPS"
STRICT_FILES = frozenset({"test_browser.py"})
STRICT_REASON = re.compile(r"\b(ray|chromium|playwright|bubblewrap)\b", re.IGNORECASE)
_failed: list[str] = []


def strict() -> bool:
    """Whether skips of the browser and Ray tests fail this run."""
    return os.environ.get(ENV, "") not in ("", "0")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _enforce(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (strict() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    in_strict_file = Path(report.nodeid.split("::")[0]).name in STRICT_FILES
    if not (in_strict_file or STRICT_REASON.search(reason)):
        return
    why = (f"{report.nodeid}: skipped in CI ({ENV}=1): {reason} -- the browser and Ray tests must run here; "
           "install what the reason names (.ci/run installs /usr/bin/chromium, bubblewrap and the dev extra)")
    if why in _failed:
        return
    _failed.append(why)
    if isinstance(report, pytest.TestReport):
        report.outcome = "failed"
        report.longrepr = why
    # A skipped module stays a skip in the report (a collection error would stop the whole session);
    # pytest_sessionfinish fails the run instead.


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    _enforce(report)
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # Called where the run is summed up: in the one process, or with pytest-xdist on the controller for each
    # worker's collection (every worker collects every module, so the same skip can come several times).
    _enforce(report)


def pytest_report_header(config: pytest.Config) -> str | None:
    if strict():
        return f"strict skips: on ({ENV}=1): a skipped browser or Ray test fails the run"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _failed and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _failed:
        terminalreporter.section("skips that fail in CI", sep="=", red=True, bold=True)
        for line in _failed:
            terminalreporter.line(line)
