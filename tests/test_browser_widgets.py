"""Lesson 01's explorer works in a real browser: JupyterLab in headless Chromium, driven by Playwright.

nbval and tools/execute.py check that the explorer cell runs in a kernel; neither has a front end, so
neither sees whether the widgets render and whether moving a slider redraws the figure. This test does:
it starts JupyterLab on 127.0.0.1 over a temporary copy of solutions/01_noise_schedules.ipynb (outputs
stripped), opens it in headless Chromium, runs all cells from the Run menu, presses the arrow keys on
the explorer's "t / T" slider and checks that the figure in the explorer's output changes (the PNG in
its <img src>), that the slider's old value brings the old figure back, that RAPID_PRESSES keys pressed faster than the kernel
redraws end on the last value's figure (not a blank or an intermediate one), and that no cell shows an error or stderr.

Needs a Chromium binary (/usr/bin/chromium, Debian's `chromium` package; or MINIDIFF_CHROMIUM=PATH)
and the `playwright` package (pip install playwright; its own browser download is not needed). Without
either it is skipped, and the reason names what is missing. JupyterLab's settings, workspaces, data and
runtime folders all live in pytest's tmp_path, so neither the repository nor ~/.jupyter is touched.
Every wait is bounded: the whole test has BUDGET_S seconds, and the server runs under `timeout`, so it
dies even if pytest is killed. On failure it prints a screenshot's path, browser errors and the log tail.
"""

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "01_noise_schedules.ipynb"
CHROMIUM = os.environ.get("MINIDIFF_CHROMIUM", "/usr/bin/chromium")
BUDGET_S = 120  # the whole test: server start, page load, Run All, the slider (about 20 s here)
SERVER_START_S = 60  # within BUDGET_S
SERVER_HARD_LIMIT_S = 300  # `timeout` ends the server after this, whatever happens to pytest
STEP_MS = 30_000  # any single browser action or wait, at most
QUIET_S = 1.5  # a figure counts as final once unchanged this long with the kernel idle
RAPID_PRESSES = 15  # ArrowRight presses sent without waiting for a redraw
SLIDER = "t / T"  # the explorer's slider this test moves (lesson 01: T, schedule, β_T / s / τ, t / T)


def _missing() -> list[str]:
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        how = "set by MINIDIFF_CHROMIUM" if "MINIDIFF_CHROMIUM" in os.environ else "install Debian's `chromium` or set MINIDIFF_CHROMIUM"
        missing.append(f"no Chromium executable at {CHROMIUM} ({how})")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the `playwright` package is not installed (pip install playwright)")
    return missing


MISSING = _missing()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(MISSING), reason="browser test: " + "; ".join(MISSING)),
]


class TimeBudget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def ms(self, cap_ms: int = STEP_MS) -> int:
        """Milliseconds for the next wait: cap_ms, or what is left of the budget (at least 1)."""
        return max(1, min(cap_ms, int(self.left() * 1000)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no server log: {e})"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


class Lab:
    """A JupyterLab server on 127.0.0.1 in its own process group, with all its state under `home`."""

    def __init__(self, home: Path, root_dir: Path, budget: TimeBudget):
        self.port, self.token, self.log = _free_port(), secrets.token_hex(16), home / "jupyterlab.log"
        self.base = f"http://127.0.0.1:{self.port}"
        settings = home / "lab-settings"
        # Every cell in the DOM (no windowing), and no news / update toasts over the notebook.
        _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
        _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        env = dict(os.environ)  # conftest applied tools/test_env.py: the kernel runs as under nbval
        env.update({
            "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        })
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root_dir}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        if shutil.which("timeout"):
            cmd = ["timeout", "-k", "10", str(SERVER_HARD_LIMIT_S), *cmd]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(budget)

    def _wait_ready(self, budget: TimeBudget) -> None:
        end = time.monotonic() + min(SERVER_START_S, budget.left())
        request = urllib.request.Request(f"{self.base}/api/status", headers={"Authorization": f"token {self.token}"})
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{_log_tail(self.log)}")
            try:
                with urllib.request.urlopen(request, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{_log_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM to the process group (the server then shuts its kernels down), SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def budget():
    return TimeBudget(BUDGET_S)


@pytest.fixture
def lab(tmp_path, budget):
    """JupyterLab serving a copy of lesson 01's solution with its outputs stripped (so every figure seen is new)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, root / NOTEBOOK.name)
    server = None
    try:
        server = Lab(tmp_path, root, budget)
        yield server
    finally:
        if server is not None:
            server.stop()


def test_explorer_slider_redraws_figure(lab, budget, tmp_path):
    from playwright.sync_api import sync_playwright

    problems = []  # browser-side errors, printed on failure
    screenshot = tmp_path / "jupyterlab.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=budget.ms())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(STEP_MS)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text[:300]}") if m.type == "error" else None)
            try:
                _drive(page, lab, budget)
            except BaseException:
                try:
                    page.screenshot(path=str(screenshot), full_page=True, timeout=10_000)
                    print(f"screenshot: {screenshot}")
                except Exception as e:  # the page may be gone: report the original failure anyway
                    print(f"no screenshot: {e}")
                print("browser errors:", *problems[-20:] or ["none"], sep="\n  ")
                print(f"JupyterLab log tail ({lab.log}):\n{_log_tail(lab.log)}")
                raise
        finally:
            browser.close()


def _drive(page, lab, budget: TimeBudget) -> None:
    page.goto(f"{lab.base}/lab/tree/{NOTEBOOK.name}?token={lab.token}", wait_until="domcontentloaded", timeout=budget.ms(60_000))
    page.locator(".jp-Notebook").wait_for(timeout=budget.ms(60_000))
    kernel_idle = page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$"))  # "Python 3 (ipykernel) | Idle"
    kernel_idle.wait_for(timeout=budget.ms(60_000))  # the kernel has started (the toolbar says "idle" before that)

    # Run All from the menu bar, then wait until every code cell has its execution count.
    page.get_by_role("menuitem", name="Run", exact=True).click(timeout=budget.ms())
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=budget.ms())
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
        }""",
        timeout=budget.ms(90_000),
    )
    kernel_idle.wait_for(timeout=budget.ms())
    _assert_no_error_outputs(page, "after Run All")

    explorer = page.locator(".jp-Notebook .widget-interact")
    assert explorer.count() == 1, f"expected one interact widget, found {explorer.count()}"
    image = explorer.locator(".widget-output img")
    slider = explorer.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=re.compile(f"^{re.escape(SLIDER)}$")))
    handle, readout = slider.locator("[role=slider]"), slider.locator(".widget-readout")

    def settled(changed_from: str | None, why: str) -> tuple[str, str]:
        """The readout and figure once a figure other than `changed_from` has stayed put for QUIET_S with the kernel idle.

        Waiting for quiet matters: the explorer redraws on every change of a widget's value, including the one the
        front end makes by itself after the first draw (see below), and a figure caught between two redraws is not
        the one for the readout's value."""
        end = time.monotonic() + budget.ms() / 1000
        last, since = None, time.monotonic()
        while time.monotonic() < end:
            src = image.get_attribute("src", timeout=budget.ms(2_000)) if image.count() else None
            if src != last:
                last, since = src, time.monotonic()
            elif (src and src.startswith("data:image/png") and src != changed_from and time.monotonic() - since >= QUIET_S
                  and kernel_idle.count()):
                return readout.inner_text(), src
            page.wait_for_timeout(100)
        raise AssertionError(f"the explorer's figure did not settle {why} (last src: {str(last)[:60]!r})")

    def move(key: str) -> tuple[str, str]:
        old_value, old_src = readout.inner_text(), image.get_attribute("src")
        handle.focus(timeout=budget.ms())
        page.keyboard.press(key)
        value, src = settled(old_src, f"after {key} on {SLIDER!r} at {old_value}")
        _assert_no_error_outputs(page, f"after {key} on {SLIDER!r}: {old_value} -> {value}")
        return value, src

    before_value, before_src = settled(None, "after Run All")
    assert before_src.startswith("data:image/png;base64,"), f"the explorer shows no PNG: {before_src[:80]!r}"
    after_value, after_src = move("ArrowRight")
    assert after_value != before_value, f"the {SLIDER!r} readout stayed at {before_value} after ArrowRight"

    # Back and forth again: the figure is a function of the widgets' values, not merely redrawn. (Not compared
    # with the very first figure: the front end snaps the log slider's 0.008 to 10^-2.1 = 0.00794 and sends
    # that back, so figures after the first one are drawn with the snapped value.)
    back_value, back_src = move("ArrowLeft")
    assert back_value == before_value, f"ArrowLeft took {SLIDER!r} to {back_value}, not back to {before_value}"
    again_value, again_src = move("ArrowRight")
    assert again_value == after_value, f"ArrowRight took {SLIDER!r} to {again_value}, not to {after_value} as before"
    assert again_src == after_src, f"{SLIDER!r} at {after_value} twice, with the other widgets unchanged, but the figures differ"

    # Keys pressed faster than the kernel redraws: every press sends a new value while earlier redraws are still
    # running. The figure must end on the last value's figure, never blank and never an intermediate one.
    handle.focus(timeout=budget.ms())
    for _ in range(RAPID_PRESSES):
        page.keyboard.press("ArrowRight")
    rapid_value, rapid_src = settled(again_src, f"after {RAPID_PRESSES} quick ArrowRight presses from {again_value}")
    _assert_no_error_outputs(page, f"after {RAPID_PRESSES} quick presses")
    assert rapid_value != again_value, f"{RAPID_PRESSES} quick ArrowRight presses left {SLIDER!r} at {again_value}"
    # the same value reached one key at a time draws the same figure
    move("ArrowLeft")
    slow_value, slow_src = move("ArrowRight")
    assert slow_value == rapid_value, f"ArrowLeft, ArrowRight took {SLIDER!r} to {slow_value}, not back to {rapid_value}"
    assert slow_src == rapid_src, (f"after quick presses the figure is not the one for {SLIDER!r} = {rapid_value} "
                                   "(a redraw race: the output shows a blank or an intermediate figure)")


def _assert_no_error_outputs(page, when: str) -> None:
    """No traceback or stderr anywhere in the notebook (JupyterLab renders both as the stderr MIME type)."""
    bad = page.locator(".jp-Notebook .jp-OutputArea-output").and_(
        page.locator('[data-mime-type="application/vnd.jupyter.stderr"], [data-mime-type="application/vnd.jupyter.error"]'))
    texts = bad.all_inner_texts()
    assert not texts, f"{when}: {len(texts)} error/stderr outputs, the first:\n{texts[0][:2000]}"
