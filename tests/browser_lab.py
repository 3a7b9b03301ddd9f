"""A real JupyterLab server and a headless Chromium page driving it, for tests/test_browser.py.

The server is started on a free loopback port in a private folder (copies of the notebooks, its
own settings, workspaces and runtime folders), with the archive and installation handed to the
notebooks through WORKBENCH_RDAGENT_ROOT / WORKBENCH_ARCHIVE, and stopped with its kernels at the
end. The browser is Debian's `chromium` (Playwright cannot download browsers here); every request
that would leave localhost is refused and recorded, and every console error is kept, so a test can
say the page fetched nothing from outside and logged nothing wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
HOW_TO_GET_A_BROWSER = (
    "the browser tests need Chromium: `apt-get install chromium` (Debian/Ubuntu), or set "
    "WORKBENCH_CHROMIUM to a Chrome/Chromium executable; `scripts/install.sh requirements-dev.lock` "
    "installs Playwright for Python"
)

# JupyterLab settings for a test user: no "official Jupyter news" question and every cell rendered
# (the default windowing draws only the cells in view, so off-screen outputs would not exist).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def find_chromium() -> str | None:
    """The Chromium to drive: $WORKBENCH_CHROMIUM, else the first chromium-like program on PATH."""
    explicit = os.environ.get("WORKBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterLab:
    """A running JupyterLab server: its base URL, token and the folder it serves."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API (sessions, contents) with the token."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End every notebook session: kernels must not keep the archive open between tests."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def write_lab_settings(settings_dir: Path) -> None:
    for relative, values in LAB_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@contextmanager
def jupyter_lab(base: Path, *, rdagent_root: Path, archive: Path) -> Iterator[JupyterLab]:
    """Start JupyterLab serving copies of the notebooks under `base`; stop it (and its kernels) after."""
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    for name in ("settings", "workspaces", "runtime", "config"):
        (base / name).mkdir()
    write_lab_settings(base / "settings")
    port, token = free_port(), "workbench-browser-test"
    env = {
        **os.environ,
        "WORKBENCH_RDAGENT_ROOT": str(rdagent_root),
        "WORKBENCH_ARCHIVE": str(archive),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
    }
    log = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells, read the notebook model
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        wait_until_serving(lab)
        yield lab
    finally:
        stop(lab)


def wait_until_serving(lab: JupyterLab, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


def stop(lab: JupyterLab) -> None:
    """Shut kernels down, then the server's whole process group (SIGTERM, then SIGKILL)."""
    try:
        lab.shut_down_kernels()
    except (urllib.error.URLError, OSError):
        pass
    if lab.process.poll() is None:
        os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait(timeout=15)


# ------------------------------------------------------------------------------------------ browser

NOTEBOOK_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(w && w.context && w.context.path === %s && w.context.isReady
            && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle');
}"""

ALL_CELLS_RAN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === 'code' && c.executionCount === null) return false;
  }
  return w.sessionContext.session.kernel.status === 'idle';
}"""

CELL_OUTPUTS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === 'code') out.push({source: c.sharedModel.getSource(), outputs: c.toJSON().outputs});
  }
  return out;
}"""


@dataclass
class LabPage:
    """One browser tab on the server: what it asked for outside localhost, what it logged as errors."""

    page: Any  # playwright.sync_api.Page
    lab: JupyterLab
    outside_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def open_notebook(self, name: str, *, timeout_ms: int = 90_000) -> None:
        """Open a notebook in a fresh workspace and wait for its kernel to be idle."""
        self.page.goto(f"{self.lab.url}/lab/tree/{name}?reset&token={self.lab.token}")
        self.page.wait_for_function(NOTEBOOK_READY % json.dumps(name), timeout=timeout_ms, polling=250)

    def run_all_cells(self, *, timeout_ms: int = 240_000) -> list[dict[str, Any]]:
        """Run > Run All Cells, wait until every code cell ran and the kernel is idle; the cells."""
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(ALL_CELLS_RAN, timeout=timeout_ms, polling=500)
        self.wait_for_widgets()
        cells: list[dict[str, Any]] = self.page.evaluate(CELL_OUTPUTS)
        return cells

    def wait_for_widgets(self, timeout_ms: int = 30_000) -> None:
        """Widget views render asynchronously after their output arrives."""
        self.page.wait_for_function(
            "() => !Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
            ".some(e => /Loading widget/.test(e.textContent))",
            timeout=timeout_ms,
            polling=250,
        )

    def drawn_widget_outputs(self) -> int:
        """Outputs holding a live control (ipywidgets) or a drawn chart (Altair's JupyterChart)."""
        count: int = self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
            ".filter(e => e.querySelector('.jupyter-widgets, .vega-embed svg')).length"
        )
        return count

    def outputs_of_type(self, cells: list[dict[str, Any]], output_type: str) -> list[dict[str, Any]]:
        return [o for c in cells for o in c["outputs"] if o["output_type"] == output_type]

    def text(self) -> str:
        text: str = self.page.locator(".jp-NotebookPanel:visible").inner_text()
        return text


def new_lab_page(browser: Any, lab: JupyterLab, *, width: int = 1500, height: int = 1000) -> LabPage:
    """A fresh browser context (no shared state) whose requests outside the server are refused."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    tab = LabPage(page, lab)

    def only_local(route: Any) -> None:
        url = route.request.url
        if url.startswith(lab.url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            tab.outside_requests.append(url)
            route.abort()

    context.route("**/*", only_local)
    page.on(
        "websocket",
        lambda ws: (
            None if ws.url.startswith(lab.url.replace("http", "ws")) else tab.outside_requests.append(ws.url)
        ),
    )
    page.on("console", lambda m: tab.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.console_errors.append(f"uncaught: {e}"))
    return tab
