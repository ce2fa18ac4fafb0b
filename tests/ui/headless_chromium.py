"""A small driver of Debian's headless Chromium through the DevTools protocol.

Chromium's one-shot ``--screenshot`` / ``--dump-dom`` with ``--virtual-time-budget``
return Streamlit's empty shell: virtual time runs out before the page's websocket
delivers anything. So the test starts Chromium with a DevTools port and waits, in real
time, until the page shows what it checks, then takes the DOM text and a screenshot.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Chromium:
    """One headless Chromium with one page, driven over its DevTools websocket."""

    def __init__(self, user_data_dir: Path, *, width: int = 1400, height: int = 1500) -> None:
        self.process = subprocess.Popen(
            [
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._next_id = 0
        self._closing = ExitStack()
        self.ws: ClientConnection = self._closing.enter_context(
            connect(self._page_websocket(), max_size=None)
        )

    def _page_websocket(self, timeout: float = 30.0) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        browser_url = None
        while browser_url is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            found = LISTENING.search(line)
            browser_url = found.group(1) if found else None
        if browser_url is None:
            raise RuntimeError("chromium did not open its DevTools port")
        http = "http://" + browser_url.split("/")[2]
        with urllib.request.urlopen(f"{http}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"{expression!r}: {details.get('exception', details)}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, *, timeout: float = 45.0) -> None:
        """Wait until ``expression`` is truthy in the page."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(f"Boolean({expression})"):
                    return
            except RuntimeError:
                pass  # the page is still loading (no body yet)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never satisfied {expression!r}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._closing.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
