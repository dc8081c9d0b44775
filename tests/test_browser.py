# pytest tests/test_browser.py -m browser -q
"""JupyterLab in headless Chromium: run notebooks/autoresearch.ipynb on the demo target (a 3-second budget) as a
researcher would (issue 16): Stop during the baseline cell, re-run the open and dashboard cells, Propose in a run
without a baseline (the baseline runs first), Approve with Stop enabled during the run, the step-by-step cells and
the background loop (a curve with points, a row per experiment, the progress chart) with a run that crashes, Stop
now, choose an experiment (the crashed one: its reason and the last lines of its log), click a table row to show
its experiment, overlay two experiments' curves with the compare picker, then save, shut the kernel down and reopen: the static copy shows. Screenshots of
each state go to test-artifacts/ (the assertions read the DOM's text, never pixels).

JupyterLab runs on 127.0.0.1 with a token and its own config, data, runtime, settings and workspace folders; the
kernelspec ``python3`` there runs this Python (sys.executable) with this checkout on PYTHONPATH, and JupyterLab
(``sys.executable -m jupyterlab``) finds the extensions pip installed for this Python wherever they went (a venv's
base Python included, see ``extension_dirs``). Debian's chromium is driven through the ``playwright`` package
(``playwright install`` is never needed).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_notebooks import ROOT, kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(480)]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
QUEUE = '''[[experiment]]
description = "lower the learning rate to 0.003"
edits = [{ search = "LR = 0.01", replace = "LR = 0.003" }]

[[experiment]]
description = "halve the width"
edits = [{ search = "WIDTH = 64", replace = "WIDTH = 32" }]

[[experiment]]
description = "a long step"
edits = [{ search = "EXTRA_SECONDS = 0.0", replace = "EXTRA_SECONDS = 90.0" }]

[[experiment]]
description = "sleep a negative time"
edits = [{ search = "SLEEP_S = 0.05", replace = "SLEEP_S = -1.0" }]

[[experiment]]
description = "a very long run"
edits = [{ search = "EXTRA_SECONDS = 0.0", replace = "EXTRA_SECONDS = 120.0" }]
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """(base url, token, number of cells): JupyterLab serving a demo target that holds a parameterised copy of the notebook."""
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from autoresearch_nb.dashboard import make_demo_repo

    repo = make_demo_repo(tmp_path / "target", queue=QUEUE)
    nb = load_notebook_node(str(ROOT / "notebooks" / "autoresearch.ipynb"))
    nb = parameterize_notebook(nb, dict(tag="ui", agent="queue", time_budget_s=3, max_experiments=10))
    # A step-by-step run that blocks its cell for 90 s: Stop now must act during it (issue 26 bug 1).
    start = next(i for i, c in enumerate(nb.cells) if "loop.start(" in c.source)
    nb.cells.insert(start - 1, nbformat.v4.new_code_cell(
        "slow = loop.run(loop.propose())   # blocks this cell\nprint(f'#{slow.number} {slow.status.value}')"))
    nbformat.write(nb, repo / "autoresearch.ipynb")

    settings = tmp_path / "lab-settings"
    notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True)
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, **kernel_env(tmp_path), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")}
    env["JUPYTER_PATH"] = os.pathsep.join([env["JUPYTER_PATH"], *extension_dirs()])
    env.pop("AUTORESEARCH_NB_DISPLAY", None)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={repo}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.3)
        _check_widgets_extension(base, token)
        yield base, token, len(nb.cells)
    finally:
        _kill(proc)
        log.close()


def extension_dirs() -> list[str]:
    """The ``share/jupyter`` folders where pip put this interpreter's packages' data files, JupyterLab's
    extensions among them (ipywidgets' ``@jupyter-widgets/jupyterlab-manager``): the environment's own, the base
    Python's and the user's. jupyter_core looks only in ``sys.prefix`` and the user's data folder, so a venv made
    with ``--system-site-packages`` imports ipywidgets from the base Python but its JupyterLab never loads the
    extension (widgets never render), and this test's own ``JUPYTER_DATA_DIR`` hides a ``pip install --user``."""
    import site

    dirs = []
    for prefix in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, site.getuserbase()):
        d = str(Path(prefix) / "share" / "jupyter")
        if d not in dirs and Path(d, "labextensions").is_dir():
            dirs.append(d)
    return dirs


def _check_widgets_extension(base: str, token: str) -> None:
    """Fail at once, saying why, when this JupyterLab has no ipywidgets extension (no dashboard could show)."""
    with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=30) as r:
        page = r.read().decode("utf-8", "replace")
    if "@jupyter-widgets/jupyterlab-manager" not in page:
        pytest.fail("JupyterLab loaded no @jupyter-widgets/jupyterlab-manager extension (searched "
                    f"{extension_dirs()} besides sys.prefix): install ipywidgets into the Python that runs this test")


def _kill(proc: subprocess.Popen) -> None:
    """End the server and its kernels (their own process group)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_dashboard_in_jupyterlab(lab):
    from playwright.sync_api import expect, sync_playwright

    base, token, n_cells = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        try:
            _run(page, expect, base, token, n_cells)
        except Exception:
            for i, pg in enumerate(context.pages):
                pg.screenshot(path=str(ARTIFACTS / f"browser-failure-{i}.png"))
            raise
        finally:
            browser.close()


def _wait_for_kernel(page, expect, base: str, token: str) -> None:
    """Wait until the notebook's kernel has started (the server says idle) and the page is connected to it:
    Shift+Enter pressed while a cold kernel (a fresh venv compiles every import) is still starting runs nothing."""
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
                kernels = json.load(r)
        except (urllib.error.HTTPError, urllib.error.URLError, TimeoutError) as e:
            # under load the server answered 500 while the kernel started (a suite run beside two busy
            # processes): a transient answer of a poll, asked again until the deadline
            kernels = [{"error": str(e)}]
        if any(k.get("execution_state") == "idle" for k in kernels):
            break
        assert time.monotonic() < deadline, f"the kernel did not start: {kernels}"
        time.sleep(0.5)
    expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']")) \
        .to_have_count(1, timeout=60_000)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=60_000)


def _run_cells(page, expect, cells, first: int, last: int) -> None:
    """Run cells ``first`` .. ``last`` with Shift+Enter (each selects the next cell); each code cell's prompt
    must leave ``[ ]`` (the kernel took it)."""
    cells.nth(first).click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")  # command mode: Shift+Enter runs a cell and selects the next one
    for i in range(first, last + 1):
        for _ in range(10):  # a keypress can be lost while the notebook re-renders; check the selection moved
            page.keyboard.press("Shift+Enter")
            try:
                expect(cells.nth(i + 1)).to_have_class(re.compile(r"\bjp-mod-active\b"), timeout=3_000)
                break
            except AssertionError:
                cells.nth(i).click(position={"x": 5, "y": 5})
                page.keyboard.press("Escape")
        else:
            raise AssertionError(f"cell {i + 1} does not take Shift+Enter")
        if "jp-CodeCell" in (cells.nth(i).get_attribute("class") or ""):
            prompt = cells.nth(i).locator(".jp-InputPrompt")
            expect(prompt).to_have_count(1)
            expect(prompt).not_to_have_text(re.compile(r"^\s*\[ \]:\s*$"), timeout=5_000)


def _option(select, text: str) -> int:
    """The index of ``select``'s first option that contains ``text`` (ipywidgets writes its spaces as nbsp)."""
    labels = [o.inner_text().replace("\xa0", " ") for o in select.locator("option").all()]
    found = [i for i, label in enumerate(labels) if text in label]
    assert found, f"no option with {text!r} in {labels}"
    return found[0]


def _shot(locator, name: str) -> None:
    locator.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _run(page, expect, base: str, token: str, n: int) -> None:
    page.goto(f"{base}/lab/tree/autoresearch.ipynb?token={token}")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    expect(cells.first).to_be_visible(timeout=60_000)
    _wait_for_kernel(page, expect, base, token)
    expect(cells).to_have_count(n, timeout=30_000)  # the notebook renders its cells progressively
    baseline_cell = next(i for i in range(n) if "dash.baseline()" in cells.nth(i).inner_text())
    _run_cells(page, expect, cells, 0, baseline_cell)   # open, dashboard, the baseline (in the background)

    dash = page.locator(".arnb-dashboard").first
    expect(dash).to_be_visible(timeout=60_000)
    status = dash.locator(".arnb-status")
    stop_now, propose = dash.locator(".arnb-stop-now"), dash.locator(".arnb-propose")
    # Stop during the baseline cell: enabled, and it acts.
    expect(stop_now).to_be_enabled(timeout=60_000)
    expect(propose).to_be_disabled()
    _shot(dash, "1-baseline-running")
    stop_now.click()
    expect(stop_now).to_be_disabled(timeout=30_000)
    rows = dash.locator(".arnb-table-view table tbody tr")
    expect(rows.first).to_contain_text("interrupted", timeout=15_000)
    _shot(dash, "2-baseline-stopped")

    # Re-running the Loop.open and dashboard cells in the same kernel: no error ("already open in another
    # process" was the kernel itself), the same run resumed (its interrupted baseline kept), one live dashboard.
    open_cell = next(i for i in range(n) if "Loop.open(" in cells.nth(i).inner_text())
    opened = cells.nth(open_cell).locator(".jp-OutputArea-output")
    expect(opened.first).to_contain_text("experiments=0")
    worktree = next(line for line in opened.first.inner_text().splitlines() if line.startswith("worktree:"))
    _run_cells(page, expect, cells, open_cell, open_cell + 2)   # open, its markdown, the dashboard
    expect(opened.first).to_contain_text("experiments=1", timeout=30_000)   # the interrupted baseline, resumed
    expect(opened.first).to_contain_text("tag='ui'")
    expect(opened.first).to_contain_text(worktree)
    expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")) \
        .to_have_count(0, timeout=5_000)
    expect(page.locator(".jp-OutputArea-output", has_text=re.compile(r"\w+Error\b|Traceback"))).to_have_count(0)
    dash = page.locator(".arnb-dashboard").last
    rows = dash.locator(".arnb-table-view table tbody tr")
    expect(rows.first).to_contain_text("interrupted", timeout=15_000)
    _shot(dash, "2b-reopened-in-the-same-kernel")
    status, propose = dash.locator(".arnb-status"), dash.locator(".arnb-propose")
    stop_now = dash.locator(".arnb-stop-now")

    # Propose in a run with no (finished) baseline: the baseline runs first, and the status says so.
    expect(propose).to_be_enabled(timeout=30_000)
    propose.click()
    expect(status).to_contain_text("no baseline yet", timeout=30_000)
    _shot(dash, "3-propose-runs-the-baseline-first")
    approve = dash.locator(".arnb-approve")
    expect(approve).to_be_visible(timeout=90_000)
    expect(dash.locator(".arnb-diff-view")).to_contain_text("LR = 0.003")
    _shot(dash, "4-proposed")
    # Approve: Stop is enabled while the approved run goes, the diff's subtitle follows the decision.
    approve.click()
    expect(stop_now).to_be_enabled(timeout=30_000)
    expect(status).not_to_contain_text("approve, reject or edit")
    expect(stop_now).to_be_disabled(timeout=60_000)
    expect(dash.locator(".arnb-diff-view .arnb-diff-note")).to_contain_text("keep", timeout=15_000)
    _shot(dash, "5-approved-and-kept")

    # The step-by-step cells; Stop now during a cell's own run (the cell blocks the kernel): the run ends
    # interrupted and the cell returns, while the run would take 90 s; then the background loop.
    slow_cell = next(i for i in range(n) if "slow = loop.run(" in cells.nth(i).inner_text())
    _run_cells(page, expect, cells, baseline_cell + 1, slow_cell)
    expect(status).to_contain_text("a long step", timeout=90_000)
    expect(status).to_contain_text("training", timeout=60_000)
    expect(stop_now).to_be_enabled()
    stop_now.click()
    expect(cells.nth(slow_cell).locator(".jp-OutputArea-output")).to_contain_text("#4 interrupted",
                                                                                  timeout=30_000)
    expect(stop_now).to_be_disabled(timeout=15_000)
    _shot(dash, "5b-stopped-during-a-cell")
    _run_cells(page, expect, cells, slow_cell + 1, n - 2)
    page.keyboard.press("Control+Enter")  # the last cell: run it without adding a new one
    expect(status).to_contain_text("a very long run", timeout=90_000)
    expect(status).to_contain_text("training", timeout=30_000)  # the phase it is in (issue 26)
    curve = dash.locator(".arnb-curves svg #curve-running path")
    expect(curve.first).to_be_attached(timeout=30_000)
    deadline = time.monotonic() + 60  # the running curve grows with each redraw
    while True:
        d = dash.locator(".arnb-curves svg #curve-running path").first.get_attribute("d") or ""
        if len(re.findall(r"[ML]", d)) >= 10 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(re.findall(r"[ML]", d)) >= 10, f"the running curve has too few points: {d[:200]}"
    expect(dash.locator(".arnb-curves svg #curve-baseline path").first).to_be_attached()
    expect(rows.first).to_contain_text("running")  # the running experiment is a row
    _shot(dash, "6-loop-running")

    # Stop now: the long run is interrupted and the loop ends.
    stop_now.click()
    expect(dash.locator(".arnb-finished")).to_contain_text("loop finished", timeout=30_000)
    # interrupted baseline, baseline, the approved one, halve the width, the long step, the crash, the long run
    expect(rows).to_have_count(7, timeout=15_000)
    expect(rows.first).to_contain_text("interrupted")
    expect(dash.locator(".arnb-table-view table")).to_contain_text("lower the learning rate to 0.003")
    chart = dash.locator(".arnb-progress svg")
    expect(chart.locator("#progress-kept").first).to_be_attached(timeout=15_000)
    expect(chart.locator("#progress-discarded").first).to_be_attached()
    expect(chart.locator("#progress-best path").first).to_be_attached()
    expect(stop_now).to_be_disabled()
    expect(stop_now).to_have_css("background-color", "rgb(224, 224, 224)")  # grey when it cannot act, not red
    expect(dash.locator(".arnb-progress .arnb-lineage")).to_contain_text("tried from here")
    # Drawn at the end, not a redraw later: no curve still labelled running; the noise rule in words.
    expect(dash.locator(".arnb-curves svg")).not_to_contain_text("running")
    expect(dash.locator(".arnb-curves svg")).to_contain_text("interrupted")
    expect(status).to_contain_text("runs of the same code differ by about")
    assert "noise σ" in (status.locator(".arnb-floor").get_attribute("title") or "")
    expect(dash.locator(".arnb-table-view table thead")).to_contain_text("reason")
    _shot(dash, "7-stopped")
    # Issue 26 bug 10: no horizontal scrollbar under the buttons, and the dashboard no wider than its cell
    # (the halves scroll their own wide content on purpose: a wide table scrolls inside its box)
    overflow = dash.evaluate("""el => [el, el.querySelector('.arnb-top'), ...el.querySelectorAll('.arnb-top > *')]
        .map(b => [b.className, b.scrollWidth - b.clientWidth]).filter(x => x[1] > 0)""")
    assert overflow == [], f"boxes wider than they show (a horizontal scrollbar): {overflow}"

    expect(rows.nth(1)).to_contain_text("crash")   # newest first: the long run, then the crash with its reason
    expect(rows.nth(1)).to_contain_text("sleep a negative time")

    # Choose an experiment: its reason and diff in the detail panel.
    chooser = dash.locator(".arnb-choose select")
    chooser.select_option(index=1)   # the newest: the interrupted long run
    detail = dash.locator(".arnb-diff-view .arnb-detail")
    expect(detail).to_contain_text("EXTRA_SECONDS", timeout=15_000)
    expect(dash.locator(".arnb-diff-view .arnb-reason")).to_be_visible()
    _shot(dash, "8-chosen-experiment")
    # The crashed one: why it failed and the last lines of its log (the traceback), with its diff.
    chooser.select_option(index=_option(chooser, "sleep a negative time"))
    expect(detail).to_contain_text("#5 sleep a negative time", timeout=15_000)
    expect(detail.locator(".arnb-reason")).to_contain_text("why:")
    expect(detail).to_contain_text("crash")
    log = detail.locator(".arnb-log")
    expect(log).to_contain_text("sleep length must be non-negative")
    expect(log).to_contain_text("Traceback")
    expect(detail).to_contain_text("SLEEP_S = -1.0")
    _shot(dash, "9-crash-reason-and-log-tail")

    # Select a row: a click on its row in the table shows that experiment.
    dash.locator(".arnb-table-view tr[data-number='3']").click()
    expect(detail).to_contain_text("#3 halve the width", timeout=15_000)
    expect(detail).to_contain_text("WIDTH = 32")
    expect(chooser.locator("option:checked")).to_contain_text("#3")
    _shot(dash, "10-row-selected")

    # Compare: the stored curves of two experiments over the panel, a colour and a legend entry each.
    compare = dash.locator(".arnb-compare select")
    compare.select_option(index=[_option(compare, "#1 "), _option(compare, "lower the learning rate")])
    overlay = dash.locator(".arnb-curves svg #curve-compare")
    expect(overlay).to_have_count(2, timeout=15_000)
    expect(dash.locator(".arnb-curves svg")).to_contain_text("#1 keep · baseline")   # the legend names each
    expect(dash.locator(".arnb-curves svg")).to_contain_text("#2 keep · lower the")
    _shot(dash, "11-compare-overlay")
    # The curves against optimizer steps on a log loss axis (the controls under the curves).
    dash.locator(".arnb-x-axis button", has_text="steps").click()
    dash.locator(".arnb-log-scale input").check()
    expect(dash.locator(".arnb-curves svg")).to_contain_text("optimizer steps", timeout=15_000)
    expect(dash.locator(".arnb-curves svg")).to_contain_text("loss (log scale)", timeout=15_000)
    _shot(dash, "11b-steps-log-scale")
    # Sort and filter the table in the browser (they act whatever the kernel does): the crashes only, then every
    # row sorted by number, lowest first, and again after a redraw of the table (a decision redraws it).
    table = dash.locator(".arnb-table-view")
    table.locator("table").hover()
    table.locator("select.arnb-status-filter").select_option("crash")
    expect(table.locator("tbody tr:visible")).to_have_count(1)
    expect(table.locator("tbody tr:visible")).to_contain_text("sleep a negative time")
    table.locator("select.arnb-status-filter").select_option("")
    expect(table.locator("tbody tr:visible")).to_have_count(7)
    table.locator("th", has_text=re.compile(r"^#$")).click()
    expect(table.locator("tbody tr").first).to_have_attribute("data-number", "0")
    _shot(dash, "11c-table-sorted")
    page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))

    # Save, shut the kernel down, reopen: the static copy shows instead of "model not found".
    page.keyboard.press("Control+s")
    expect(page.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0, timeout=15_000)
    req = urllib.request.Request(f"{base}/api/sessions?token={token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        sessions = json.load(r)
    for sess in sessions:
        urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/sessions/{sess['id']}?token={token}", method="DELETE"), timeout=30)
    page.close()
    page = page.context.new_page()
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.goto(f"{base}/lab/tree/autoresearch.ipynb?token={token}&reset")
    snap = page.locator(".arnb-snapshot").first
    expect(snap).to_be_visible(timeout=60_000)
    expect(snap).to_contain_text("loop finished")
    expect(snap.locator(".arnb-table table")).to_contain_text("lower the learning rate to 0.003")
    expect(page.locator(".jp-OutputArea-output:visible", has_text="model not found")).to_have_count(0,
                                                                                                 timeout=10_000)
    _shot(snap, "12-reopened-static-copy")
