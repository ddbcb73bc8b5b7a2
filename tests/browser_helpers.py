"""Helpers for the real-browser test (tests/test_browser.py).

A JupyterLab server on 127.0.0.1 with isolated settings, a Chromium found on the system (never downloaded
by Playwright), a notebook copy with its ``parameters`` cell overridden, and small page helpers.
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
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO / "scripts" / "install_browser.sh"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


# --------------------------------------------------------------------------------------------- chromium
def find_chromium() -> str | None:
    """Path of a Chromium executable: $SSUPER_CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for cand in (os.environ.get("SSUPER_CHROMIUM"), DEFAULT_CHROMIUM, shutil.which("chromium")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def ensure_chromium(install_timeout: float = 180.0) -> tuple[str | None, str]:
    """Find Chromium, running scripts/install_browser.sh once if it is missing.

    Returns ``(path, message)``; ``path`` is None when Chromium is still missing after the install attempt
    and ``message`` then says why (the script's last output lines).
    """
    path = find_chromium()
    if path:
        return path, f"found {path}"
    if not INSTALL_SCRIPT.is_file():
        return None, f"Chromium not found and {INSTALL_SCRIPT} is missing"
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=install_timeout,
        )
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        msg = f"install_browser.sh exited {proc.returncode}: {tail}"
    except subprocess.TimeoutExpired:
        msg = f"install_browser.sh did not finish within {install_timeout:.0f} s"
    path = find_chromium()
    return path, (f"installed {path}" if path else f"Chromium not found at {DEFAULT_CHROMIUM} or on PATH "
                  f"after trying to install it ({msg})")


# ----------------------------------------------------------------------------------------- notebook copy
def write_parameterised_copy(src: Path, dst: Path, overrides: dict) -> list[str]:
    """Copy notebook ``src`` to ``dst`` with assignments appended to its cell tagged ``parameters``.

    Outputs are cleared. Returns the names from ``overrides`` that the parameters cell actually assigns
    (a name the cell does not define is still injected, the caller decides whether that matters).
    """
    nb = nbformat.read(str(src), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{src} has no cell tagged 'parameters'")
    cell = cells[0]
    defined = []
    for name in overrides:
        for line in cell.source.splitlines():
            stripped = line.split("#", 1)[0].replace(" ", "")
            if stripped.startswith(f"{name}=") or stripped.startswith(f"{name}:"):
                defined.append(name)
                break
    lines = [f"{k} = {v!r}" for k, v in overrides.items()]
    cell.source = cell.source.rstrip("\n") + "\n# injected by tests/test_browser.py\n" + "\n".join(lines)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return defined


# ------------------------------------------------------------------------------------------- jupyterlab
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no server log>"

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the server and its kernels down (POST /api/shutdown), then SIGTERM / SIGKILL its process group."""
        if self.proc.poll() is not None:
            return
        try:
            req = urllib.request.Request(self.url("api/shutdown"), method="POST", data=b"")
            urllib.request.urlopen(req, timeout=5).read()
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                continue


LAB_USER_SETTINGS = {
    # no news/update toasts over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # every cell in the DOM, so prompts and widgets can be found without scrolling through a virtual list
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def start_lab(root_dir: Path, work_dir: Path, token: str, start_timeout: float = 90.0) -> LabServer:
    """Start ``jupyter lab`` from this interpreter's environment on a free 127.0.0.1 port.

    Config, runtime, settings and workspace directories live under ``work_dir`` so the user's own
    JupyterLab state neither leaks in nor gets modified.
    """
    bin_dir = Path(sys.executable).parent
    jupyter = bin_dir / "jupyter"
    if not jupyter.exists():
        raise FileNotFoundError(f"{jupyter} is missing: install the kit with the 'notebooks' extra")
    work_dir.mkdir(parents=True, exist_ok=True)
    settings_dir = work_dir / "lab-settings"
    for rel, value in LAB_USER_SETTINGS.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        JUPYTER_CONFIG_DIR=str(work_dir / "config"),
        JUPYTER_RUNTIME_DIR=str(work_dir / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(work_dir / "workspaces"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    env.pop("MPLBACKEND", None)  # e.g. Agg from a headless run: the kernel then picks the inline backend
    port = free_port()
    cmd = [
        str(jupyter), "lab",
        "--no-browser",
        "--allow-root",  # containers and CI often run as root; harmless otherwise
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.disable_check_xsrf=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={work_dir / 'workspaces'}",
    ]
    log_path = work_dir / "jupyterlab.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root_dir),
                            start_new_session=True)
    log.close()
    server = LabServer(proc, port, token, root_dir, log_path)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url("api/status"), timeout=3) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"jupyter lab did not answer within {start_timeout:.0f} s:\n{server.log_tail()}")


# ------------------------------------------------------------------------------------------- page steps
_CELL_STATE_JS = """
() => {
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'));
  const prompts = cells.map(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
  const errs = Array.from(document.querySelectorAll(
      ".jp-Notebook .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"))
      .map(e => e.textContent.slice(-1500));
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return {prompts, errs, status: ind ? ind.getAttribute('data-status') : null};
}
"""


def open_notebook(page, server: LabServer, rel_path: str, timeout_s: float = 90.0) -> None:
    """Open ``rel_path`` (relative to the server root) in a fresh workspace; wait for an idle kernel."""
    page.goto(server.url(f"lab/tree/{rel_path}?reset"), timeout=timeout_s * 1000, wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=timeout_s * 1000)
    # the kernel name in the notebook toolbar only appears once a session is attached
    page.wait_for_function(
        """() => {
          const k = document.querySelector('.jp-NotebookPanel .jp-KernelName, .jp-NotebookPanel-toolbar .jp-Toolbar-kernelName');
          const ind = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
          return k && /python/i.test(k.textContent) && ind && ind.getAttribute('data-status') === 'idle';
        }""",
        timeout=timeout_s * 1000,
    )


def run_all_cells(page, timeout_s: float = 15.0) -> None:
    """Run > Run All Cells through the menu bar, as a user would."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click(timeout=timeout_s * 1000)
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text="Run All Cells").first.click(
        timeout=timeout_s * 1000)


def wait_all_executed(page, timeout_s: float) -> dict:
    """Poll until every code cell shows an execution count ``[n]:``; fail fast on an error output."""
    deadline = time.monotonic() + timeout_s
    state: dict = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_CELL_STATE_JS)
        if state["errs"]:
            raise AssertionError("a notebook cell failed in the browser:\n" + "\n---\n".join(state["errs"]))
        prompts = state["prompts"]
        if prompts and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in prompts) \
                and state["status"] == "idle":
            return state
        page.wait_for_timeout(500)
    raise TimeoutError(f"cells still running after {timeout_s:.0f} s: prompts={state.get('prompts')} "
                       f"status={state.get('status')}")


_COUNT_TEXT_JS = """
([slider, pattern]) => {
  const area = slider.closest('.jp-OutputArea') || slider.closest('.jp-Cell') || document;
  const re = new RegExp(pattern, 'i');
  const nodes = area.querySelectorAll(
      '.widget-html-content, .widget-label, .widget-text input, .widget-textarea textarea, .jp-RenderedText, .jp-RenderedHTMLCommon');
  const texts = [];
  for (const n of nodes) {
    if (n.closest('.widget-slider')) continue;           // the slider's own description / readout
    const t = ('value' in n && n.tagName !== 'DIV' ? n.value : n.textContent).trim();
    if (t && re.test(t)) texts.push(t);
  }
  return texts;
}
"""


def find_slider(page, label_pattern: str, timeout_s: float = 30.0):
    """The rendered ipywidgets slider whose description matches ``label_pattern`` (case-insensitive)."""
    import re

    outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
    sliders = outputs.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(label_pattern, re.I)))
    try:
        sliders.first.wait_for(state="visible", timeout=timeout_s * 1000)
    except Exception as exc:  # noqa: BLE001 - re-raised with what the page shows instead
        loading = page.locator(".jp-Notebook", has_text="Loading widget").count()
        descr = page.evaluate("() => Array.from(document.querySelectorAll('.widget-slider .widget-label'))"
                              ".map(e => e.textContent)")
        raise AssertionError(f"no rendered slider labelled /{label_pattern}/ (sliders: {descr}; "
                             f"'Loading widget...' shown: {bool(loading)})") from exc
    return sliders.first


def count_texts(slider, pattern: str) -> list[str]:
    """Texts next to ``slider`` (same output area, outside the slider) matching ``pattern``."""
    return slider.evaluate("(el, pat) => (" + _COUNT_TEXT_JS + ")([el, pat])", pattern)


def slider_value(slider) -> str:
    """The slider's displayed value: its readout text (aria-valuenow is rounded to one decimal)."""
    readout = slider.locator(".widget-readout")
    if readout.count():
        return readout.first.inner_text().strip()
    return slider.locator(".noUi-handle").first.get_attribute("aria-valuenow") or ""


def move_slider_until_changed(page, slider, pattern: str, max_presses: int = 100, settle_ms: int = 400,
                              timeout_s: float = 90.0) -> tuple[list[str], list[str], str, str]:
    """Move the slider with the keyboard (arrow keys on the focused handle) until the count text changes.

    Tries ArrowRight first (raising a confidence threshold usually drops boxes), then ArrowLeft.
    Returns (texts_before, texts_after, value_before, value_after).
    """
    handle = slider.locator(".noUi-handle").first
    before = count_texts(slider, pattern)
    if not before:
        raise AssertionError(f"no text matching /{pattern}/ next to the slider")
    value_before = slider_value(slider)
    handle.click()  # focuses the handle; a click at its centre does not move it
    handle.focus()
    deadline = time.monotonic() + timeout_s
    for key in ("ArrowRight", "ArrowLeft"):
        for _ in range(max_presses):
            if time.monotonic() > deadline:
                raise TimeoutError(f"slider: no change of {before!r} within {timeout_s:.0f} s")
            prev_value = slider_value(slider)
            page.keyboard.press(key)
            page.wait_for_timeout(settle_ms)
            after = count_texts(slider, pattern)
            if after and after != before:
                return before, after, value_before, slider_value(slider)
            if slider_value(slider) == prev_value:
                break  # reached the end of the range in this direction
    raise AssertionError(f"moving the slider from {value_before} over its whole range never changed "
                         f"{before!r}")
