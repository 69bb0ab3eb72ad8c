"""Debian's chromium, headless, driven over the DevTools protocol on a pipe.

No browser can be downloaded here, so no Playwright: `--remote-debugging-pipe`
makes chromium read NUL-separated JSON commands on fd 3 and answer on fd 4,
which is all a test needs (navigate, evaluate, answer a dialog, screenshot).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a test kernel; nothing untrusted is loaded
    "--no-zygote",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1200,520",
    "--remote-debugging-pipe",
)


class Browser:
    """One chromium process and one page in it."""

    def __init__(self, profile: str, log_path: str) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            raise RuntimeError("chromium is not installed (make deps installs it)")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                'exec 3<&"$CDP_IN" 4>&"$CDP_OUT"; exec "$@"',
                "chromium",
                binary,
                *FLAGS,
                "--user-data-dir=" + profile,
                "about:blank",
            ],
            env=dict(os.environ, CDP_IN=str(to_browser_read), CDP_OUT=str(from_browser_write)),
            pass_fds=(to_browser_read, from_browser_write),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        # How a prompt (the dashboard asks for the token on a 401) is answered.
        self.dialog_answer: tuple[bool, str] = (False, "")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = ""

    def _read(self) -> None:
        buffered = b""
        while True:
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                return
            buffered += chunk
            while b"\0" in buffered:
                raw, buffered = buffered.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()
                if message.get("method") == "Page.javascriptDialogOpening":
                    self._answer_dialog()

    def _answer_dialog(self) -> None:
        # From the reader thread: send without waiting for the reply.
        with self._lock:
            self._next_id += 1
            number = self._next_id
        accept, text = self.dialog_answer
        message = {
            "id": number,
            "method": "Page.handleJavaScriptDialog",
            "params": {"accept": accept, "promptText": text},
            "sessionId": self.session,
        }
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """One command to the page (or the browser before `open`); its result."""
        with self._lock:
            self._next_id += 1
            number = self._next_id
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while number not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise RuntimeError("chromium did not answer %s" % method)
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(number)
        if "error" in reply:
            raise RuntimeError("%s: %s" % (method, reply["error"]))
        result: dict[str, Any] = reply.get("result", {})
        return result

    def open(self) -> None:
        """A page to drive, with its console, exceptions and dialogs reported."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(domain + ".enable")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError("page script failed: %s" % answer["exceptionDetails"])
        return answer["result"].get("value")

    def screenshot(self, path: str) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        """Errors the page reported: exceptions, console.error, failed loads."""
        found = []
        with self._lock:
            events = list(self.events)
        for event in events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails", {}).get("text")))
            elif (
                event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error"
            ):
                found.append(str(params.get("args")))
            elif (
                event.get("method") == "Log.entryAdded"
                and params.get("entry", {}).get("level") == "error"
            ):
                found.append(str(params["entry"].get("text")))
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self._to_browser)
        self._log.close()
