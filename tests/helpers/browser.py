"""A real browser for tests: Debian's headless Chromium, driven over the DevTools
protocol (a websocket on 127.0.0.1). The fixture that needs it installs it with apt
when it is missing and the tests run as root, and skips with the reason otherwise."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_or_install_chromium() -> str:
    """The browser's path; installs Debian's `chromium` when missing. Raises
    RuntimeError with the reason when it can be neither found nor installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("no chromium here, and apt-get cannot install it (not root, or no apt)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("apt-get installed chromium, but it is not on PATH")
    return found


class HeadlessChromium:
    """One headless Chromium process with a throwaway profile, for one page at a time."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="porter-chromium-")
        self._process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = self._devtools_port()

    def _devtools_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self._process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._process.returncode} before it listened")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port within 60 s")

    def load(
        self, page: Path, screenshot: Optional[Path] = None, expression: str = "null", full_page: bool = True
    ) -> Dict[str, Any]:
        """Load `page`; return the URLs it requested, `expression` evaluated in it
        (JSON), and save a PNG of the page (or of its first screen) to `screenshot`."""
        import urllib.request

        import websocket

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as answer:
            targets = [t for t in json.load(answer) if t.get("type") == "page"]
        socket = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        ids = itertools.count(1)
        requested: List[str] = []

        def call(method: str, **params: Any) -> Dict[str, Any]:
            number = next(ids)
            socket.send(json.dumps({"id": number, "method": method, "params": params}))
            while True:
                message = json.loads(socket.recv())
                _note(message)
                if message.get("id") == number:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        loaded = []

        def _note(message: Dict[str, Any]) -> None:
            if message.get("method") == "Network.requestWillBeSent":
                requested.append(message["params"]["request"]["url"])
            elif message.get("method") == "Page.loadEventFired":
                loaded.append(True)

        try:
            call("Network.enable")
            call("Page.enable")
            call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
            call("Page.navigate", url=page.resolve().as_uri())
            deadline = time.monotonic() + 60
            while not loaded and time.monotonic() < deadline:
                _note(json.loads(socket.recv()))
            if not loaded:
                raise RuntimeError(f"{page} did not load within 60 s")
            result = call("Runtime.evaluate", expression=f"JSON.stringify({expression})", returnByValue=True)
            value = json.loads(result["result"]["value"])
            if screenshot is not None:
                shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            return {"requested": requested, "value": value}
        finally:
            socket.close()

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)
