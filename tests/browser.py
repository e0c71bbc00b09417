"""A real headless browser for the web page's tests: Debian's Chromium, driven over the Chrome
DevTools Protocol (https://chromedevtools.github.io/devtools-protocol/) with the ``websockets``
client: navigate, then read the live DOM with JavaScript while the page's own script runs."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.served import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "chromium is not installed: .ci/install.sh installs it with apt-get, which could not here"


def command(profile: Path) -> list[str]:
    """Chromium, headless, as these tests run it (root in CI: no sandbox), with a profile of its own."""
    assert CHROMIUM is not None
    return [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}"]


class Page:
    """One tab of a running Chromium."""

    def __init__(self, socket: ClientConnection):
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped).

        Raises:
            RuntimeError: the browser answered an error.
        """
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def open(self, url: str) -> None:
        """Navigate to ``url`` (returns once the navigation started; wait for what you need)."""
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (None while it is between pages)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll ``expression`` until it is truthy; its value.

        Raises:
            AssertionError: still falsy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as error:  # the page was navigating (a redraw): ask the new one
                if "navigated or closed" not in str(error) and "context" not in str(error):
                    raise
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"the page never got {expression!r}"
            time.sleep(0.1)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A headless Chromium with one blank tab, ended when the block ends.

    Raises:
        AssertionError: its DevTools did not answer within 20 s.
    """
    port = free_port()
    process = subprocess.Popen(
        [*command(profile), f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                    tabs = [t for t in json.load(answer) if t["type"] == "page"]
                if tabs:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"chromium ended with {process.returncode}"
            assert time.monotonic() < deadline, "chromium's DevTools did not answer"
            time.sleep(0.1)
        with connect(tabs[0]["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
