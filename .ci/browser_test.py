"""The course in a real browser: JupyterLab in headless Chromium, Run All from the Run menu.

    .venv/bin/python .ci/browser_test.py [notebooks/NN_x.ipynb ...]      (or: make test-browser)

What it does, for every notebook (all of notebooks/ by default):
- copies the notebooks into a temporary folder and serves *that* folder, so nothing can be written
  back into the repository (autosave is off too);
- starts JupyterLab on 127.0.0.1, on a free port, with a random token, its own settings and
  workspaces folders, and `--LabApp.expose_app_in_browser` so the test can read the notebook's
  model (the page's HTML is never patched: that breaks the kernel WebSocket in recent Chromium);
- opens the notebook in headless Chromium (the system's: Debian's `chromium` package; no browser
  build is ever downloaded), clicks *Run → Run All Cells*, and waits for the kernel to be idle;
- fails on an error output in a cell not tagged `raises-exception` (the kernel then aborts the cells queued after
  it), a code cell that did not run, a missing figure where the stored notebook has one, or a
  JavaScript error in the page;
- saves a screenshot per notebook in build/browser/ (gitignored).

Exit code 0 when every notebook passed, 1 when one failed, 2 when Chromium or Playwright is missing
(with what to install).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "build" / "browser"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless Chromium as root needs --no-sandbox; the rest keep it from calling home (a closed
# network refuses those connections, and the refusals slow the page down).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
READ_BY_NOTEBOOKS = ("langgraph.json",)  # 10 shows the Agent Server's configuration
NOTEBOOK_TIMEOUT = 120  # seconds for one notebook's Run All; the notebooks take 4-15 s
LAB_SETTINGS = {  # user settings of the throwaway JupyterLab
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_tools() -> str | None:
    """What to install, or None when Chromium and Playwright are both there."""
    problems = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append(
            "Playwright for Python is not installed: .venv/bin/python -m pip install -r requirements-browser.txt"
        )
    if os.environ.get("CHROMIUM") and find_chromium() is None:
        problems.append(f"CHROMIUM={os.environ['CHROMIUM']}: no such file")
    elif find_chromium() is None:
        problems.append(
            "no Chromium found on PATH (chromium, chromium-browser, google-chrome, google-chrome-stable):\n"
            "  Debian/Ubuntu: sudo apt-get install chromium   (Ubuntu's snap: sudo snap install chromium)\n"
            "  Fedora: sudo dnf install chromium   macOS: brew install --cask chromium\n"
            "  or point at an installed Chrome or Edge: CHROMIUM=/path/to/chrome make test-browser\n"
            "  (this test never downloads a browser of its own: `playwright install` is not needed)"
        )
    return "\n".join(problems) or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, token: str, port: int, log) -> subprocess.Popen:
    settings = root / "_lab" / "settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # kernels draw inline, as on a learner's machine
    env["JUPYTER_RUNTIME_DIR"] = str(root / "_lab" / "runtime")
    env["JUPYTER_CONFIG_DIR"] = str(root / "_lab" / "config")  # no ~/.jupyter settings
    env["JUPYTER_DATA_DIR"] = str(root / "_lab" / "data")  # nothing written into the home folder
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={root / '_lab' / 'workspaces'}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--MappingKernelManager.cull_idle_timeout=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}; its log is {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"JupyterLab did not answer within 60 s; its log is {log.name}")


def api(port: int, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def shut_down_kernels(port: int, token: str) -> None:
    for kernel in api(port, token, "/api/kernels"):
        api(port, token, f"/api/kernels/{kernel['id']}", method="DELETE")


# JavaScript run in the page (through window.jupyterapp, exposed by a server flag).
JS_CURRENT_READY = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  return !!(w && w.content && w.content.widgets && w.content.widgets.length > 0
            && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle');
}"""
JS_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  // a cell queued or running: its model says so (drawn or not), and its prompt shows [*]
  const busy = w.content.widgets.some(c => c.model.type === 'code' && (c.model.executionState === 'running'
                                       || (c.promptNode && c.promptNode.textContent.includes('*'))));
  return {status: kernel ? kernel.status : 'none', busy: busy};
}"""
JS_NOTEBOOK = "() => window.jupyterapp.shell.currentWidget.context.model.toJSON()"
JS_SCROLL_TO = """async (index) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  await nb.scrollToItem(index, 'start');
}"""


def _error_text(output: dict) -> str:
    return f"{output.get('ename')}: {output.get('evalue')}"[:200]


def compare(stored: dict, ran: dict) -> list[tuple[int, str]]:
    """The problems of the browser's run against the stored notebook (same cells, same order):
    (cell index, what is wrong)."""
    problems = []
    stored_cells, ran_cells = stored["cells"], ran["cells"]
    if len(stored_cells) != len(ran_cells):
        return [(0, f"the page shows {len(ran_cells)} cells, the file has {len(stored_cells)}")]
    for i, (old, new) in enumerate(zip(stored_cells, ran_cells, strict=True)):
        if old["cell_type"] != "code" or not "".join(old["source"]).strip():
            continue
        tags = old.get("metadata", {}).get("tags", [])
        errors = [o for o in new.get("outputs", []) if o.get("output_type") == "error"]
        if new.get("execution_count") is None:
            problems.append((i, f"cell {i}: did not run"))
            continue
        if errors and "raises-exception" not in tags:
            problems.append((i, f"cell {i}: unexpected error {_error_text(errors[0])}"))
        if "raises-exception" in tags and not errors:
            problems.append((i, f"cell {i}: tagged raises-exception but raised nothing"))
        had_figure = any("image/png" in o.get("data", {}) for o in old.get("outputs", []))
        has_figure = any("image/png" in o.get("data", {}) for o in new.get("outputs", []))
        if had_figure and not has_figure:
            problems.append((i, f"cell {i}: the stored notebook has a figure here, the browser's run has none"))
    return problems


def run_notebook(
    browser, base: str, token: str, rel: str, stored: dict, shot: Path
) -> tuple[list[str], tuple[float, float]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    js_errors: list[str] = []
    page_errors: list[str] = []
    page.on("pageerror", lambda e: js_errors.append(f"uncaught: {e}"))
    page.on("console", lambda m: js_errors.append(f"console.error: {m.text}"[:300]) if m.type == "error" else None)
    workspace = "bt-" + Path(rel).stem  # a workspace of its own: no tab of the previous notebook comes back
    t0 = time.monotonic()
    try:
        page.goto(f"{base}/lab/workspaces/{workspace}/tree/{rel}?token={token}&reset")
        page.wait_for_function(JS_CURRENT_READY, timeout=60_000, polling=200)
        # Run → Run All Cells, as a learner does it.
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        started = time.monotonic()
        idle_since = None
        while True:
            state = page.evaluate(JS_STATE)
            quiet = state["status"] == "idle" and not state["busy"]
            now = time.monotonic()
            if quiet and now - started > 1.0:
                idle_since = idle_since or now
                if now - idle_since >= 0.6:  # idle, with nothing queued, for a moment: done
                    break
            else:
                idle_since = None
            if now - started > NOTEBOOK_TIMEOUT:
                js_errors.append(f"Run All did not finish within {NOTEBOOK_TIMEOUT} s (kernel {state['status']})")
                break
            time.sleep(0.2)
        elapsed = (started - t0, time.monotonic() - started)  # (opening the page and kernel, Run All)
        ran = page.evaluate(JS_NOTEBOOK)
        problems = compare(stored, ran)
        page_errors = list(js_errors)  # those of the run, not of the scrolling below
        # The screenshot shows the first problem, or else the last figure as the browser drew it.
        figures = [
            i for i, c in enumerate(ran["cells"]) if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
        ]
        focus = problems[0][0] if problems else (figures[-1] if figures else len(ran["cells"]) - 1)
        page.evaluate(JS_SCROLL_TO, focus)
        if not problems and figures:
            figure = page.locator(".jp-OutputArea-output img").last  # the whole figure, not only its top
            figure.scroll_into_view_if_needed(timeout=5_000)
        page.wait_for_timeout(400)
        page.screenshot(path=str(shot))
    finally:
        page.close()
    return [text for _, text in problems] + page_errors, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebook in notebooks/)")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print("make test-browser needs:\n" + missing, file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    paths = [Path(p).resolve() for p in args.notebooks] or sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    if not paths:
        print("no notebook to run", file=sys.stderr)
        return 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    failures = 0
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="browser-test-") as tmp:
        root = Path(tmp)
        (root / "notebooks").mkdir()
        for path in paths:
            shutil.copy2(path, root / "notebooks" / path.name)
        for name in READ_BY_NOTEBOOKS:  # files of the repository a notebook opens (as ../NAME)
            shutil.copy2(REPO / name, root / name)
        token, port = secrets.token_hex(16), free_port()
        log_path = SHOTS / "jupyterlab.log"
        with open(log_path, "w") as log:
            lab = start_lab(root, token, port, log)
            try:
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
                    try:
                        for path in paths:
                            stored = json.loads(path.read_text())
                            shot = SHOTS / f"{path.stem}.png"
                            try:
                                problems, elapsed = run_notebook(
                                    browser, f"http://127.0.0.1:{port}", token, f"notebooks/{path.name}", stored, shot
                                )
                            except Exception as e:  # a timeout of Playwright's, a page that did not load
                                problems = [f"{type(e).__name__}: {str(e).splitlines()[0]}"]
                                elapsed = (float("nan"), float("nan"))
                            finally:
                                shut_down_kernels(port, token)
                            status = "ok  " if not problems else "FAIL"
                            opened, ran_for = elapsed
                            print(
                                f"{status} {path.name}: {opened + ran_for:5.1f} s (open {opened:4.1f} s, "
                                f"Run All {ran_for:4.1f} s)  screenshot: {shot.relative_to(REPO)}"
                            )
                            for p in problems:
                                print(f"       {p}")
                            failures += bool(problems)
                    finally:
                        browser.close()
            finally:
                lab.terminate()
                try:
                    lab.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    lab.kill()
    total = time.monotonic() - t_all
    passed = len(paths) - failures
    print(
        f"the browser run took {total:.1f} s; screenshots in {SHOTS.relative_to(REPO)}/, JupyterLab's log in {log_path.name}"
    )
    print(f"browser: {passed} passed, {failures} failed")  # the closing line CI reads
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
