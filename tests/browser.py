"""JupyterLab started headless on loopback, and Debian's Chromium driven by Playwright.

Follows ../shared/design/BROWSER-TESTS.md: an isolated Jupyter config/settings dir, token auth,
a throwaway copy of the notebooks as the server root, and Chromium at /usr/bin/chromium (never a
downloaded browser).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium")


class Lab:
    """A JupyterLab server serving `root`; `url(path)` opens a notebook with the token."""

    def __init__(self, root: Path, home: Path, env: dict[str, str], port: int) -> None:
        self.root, self.port, self.token = root, port, secrets.token_hex(16)
        settings = home / "lab-settings"
        (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
        (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
        (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"})
        )
        lab_env = {
            **os.environ,
            **env,
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        }
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(home / "lab.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=lab_env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            try:
                if (
                    httpx.get(
                        f"http://127.0.0.1:{port}/api/status",
                        headers={"Authorization": f"token {self.token}"},
                        timeout=2,
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-1500:]}")
            time.sleep(0.2)

    def url(self, notebook: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}"

    def stop(self) -> None:
        try:
            httpx.post(
                f"http://127.0.0.1:{self.port}/api/shutdown",
                headers={"Authorization": f"token {self.token}"},
                timeout=5,
            )
            self.proc.wait(15)
        except (httpx.HTTPError, subprocess.TimeoutExpired):
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def run_all(page) -> None:  # noqa: ANN001 - a Playwright page
    """Wait for the kernel, then Run > Run All Cells (no default shortcut in JupyterLab 4)."""
    from playwright.sync_api import expect

    expect(page.locator(".jp-StatusBar-TextItem").filter(has_text="Idle")).to_be_visible(timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
