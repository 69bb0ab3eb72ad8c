"""Runs commands in the test kernel for a controller on the host.

Started inside the kernel by ``tests/kernel/with-agent``.  Process creation
is what user-mode Linux is slow at, so the controller (ansible-playbook with
its worker forks and templating) stays on the host, and only what must run
in the kernel, a module's Python or a command, runs here.

The channel is a host folder, mounted read-write at its own path (hostfs):

- the host writes ``req/<id>.json`` (through a rename, so it appears whole):
  ``{"argv": [...], "stdin": b64, "cwd": path}``, or
  ``{"put": path, "data": b64, "mode": int}``, or ``{"fetch": path}``;
- the agent answers ``resp/<id>.json``, also through a rename:
  ``{"rc": int, "stdout": b64, "stderr": b64}`` (``rc`` 255 and the reason
  in ``stderr`` when the request itself could not be carried out);
- ``ready`` appears once the agent listens; ``stop`` from the host ends it.

Requests are served concurrently (one thread each), so forks > 1 work.
A pipelined module (the modules' interpreter with a script on stdin, in a
namespace or not) runs forked from ``zygote.py``, which has Ansible's
module_utils loaded already, once that is listening; anything else, or a
module before then, runs as a new process.
Standard library only: this runs on the guest's system Python too.
"""

from __future__ import annotations

import array
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

# Seconds between looks at req/ (host-side writes are not signalled): quick
# right after a request, slower while idle. Each look costs the kernel about
# 0.6 ms of its one CPU (hostfs); at a steady 4 ms that was 12% of it.
POLL_FIRST = 0.004
POLL_IDLE = 0.05

HERE = os.path.dirname(os.path.abspath(__file__))
# The interpreter modules are sent to (ansible_python_interpreter): the
# wrapper, or the virtualenv's Python it runs; the zygote runs the same.
MODULE_PYTHON = os.path.join(HERE, "python")
MODULE_INTERPRETERS = {
    os.path.normpath(MODULE_PYTHON),
    os.path.normpath(
        os.environ.get("HAECS_KERNEL_PYTHON") or os.path.join(HERE, "../../../.venv/bin/python")
    ),
}
ZYGOTE_SOCKET = "/run/haecs-zygote.sock"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def zygote_header(argv: list[str], stdin: bytes) -> Optional[dict[str, Any]]:
    """What the zygote needs to run `argv`, or None when it is not a
    pipelined module (or the zygote is not listening yet)."""
    netns = None
    if argv[:3] == ["ip", "netns", "exec"] and len(argv) == 5:
        netns, argv = argv[3], argv[4:]
    if len(argv) != 1 or os.path.normpath(argv[0]) not in MODULE_INTERPRETERS or not stdin:
        return None
    if not os.path.exists(ZYGOTE_SOCKET):
        return None
    return {"netns": netns}


def run_in_zygote(header: dict[str, Any], files: tuple[Any, Any, Any]) -> Optional[int]:
    """The module's exit status (negative: the signal that ended it); None
    when the zygote is gone (the module has not started)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        try:
            channel.connect(ZYGOTE_SOCKET)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        fds = array.array("i", [handle.fileno() for handle in files])
        channel.sendmsg(
            [json.dumps(header).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        )
        answer = channel.makefile("rb").readline().strip()
    try:
        return int(answer)
    except ValueError:
        raise RuntimeError(
            "zygote: %s" % (answer.decode(errors="replace") or "no answer")
        ) from None


def serve(request: dict[str, Any]) -> dict[str, Any]:
    """One request, answered; never raises."""
    try:
        if "put" in request:
            path = request["put"]
            with open(path, "wb") as handle:
                handle.write(base64.b64decode(request["data"]))
            os.chmod(path, int(request.get("mode", 0o600)))
            return {"rc": 0, "stdout": "", "stderr": ""}
        if "fetch" in request:
            with open(request["fetch"], "rb") as handle:
                return {"rc": 0, "stdout": _b64(handle.read()), "stderr": ""}
        # Files, not pipes: Python feeds a pipe 512 bytes per poll, and each
        # wake-up is slow in UML (a 200 KB module took 6 s that way).
        with (
            tempfile.TemporaryFile() as stdin,
            tempfile.TemporaryFile() as stdout,
            tempfile.TemporaryFile() as stderr,
        ):
            data = base64.b64decode(request.get("stdin") or "")
            stdin.write(data)
            stdin.seek(0)
            header = zygote_header(request["argv"], data)
            returncode = None
            if header is not None:
                header["cwd"] = request.get("cwd") or None
                returncode = run_in_zygote(header, (stdin, stdout, stderr))
            if returncode is None:
                returncode = subprocess.run(
                    request["argv"],
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=request.get("cwd") or None,
                    check=False,
                ).returncode
            stdout.seek(0)
            stderr.seek(0)
            return {
                "rc": returncode,
                "stdout": _b64(stdout.read()),
                "stderr": _b64(stderr.read()),
            }
    except Exception as exc:  # the controller gets the reason; the agent goes on
        return {"rc": 255, "stdout": "", "stderr": _b64(("agent: %s" % exc).encode())}


def answer(channel: str, name: str) -> None:
    path = os.path.join(channel, "req", name)
    with open(path, "rb") as handle:
        request = json.loads(handle.read())
    os.unlink(path)
    reply = json.dumps(serve(request)).encode()
    final = os.path.join(channel, "resp", name)
    with open(final + ".part", "wb") as handle:
        handle.write(reply)
    os.rename(final + ".part", final)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: guest_agent.py CHANNEL", file=sys.stderr)
        return 2
    channel = argv[1]
    # The guest's root is read-only below an overlay; the channel must be the
    # host's folder itself, read-write.
    subprocess.run(["mount", "-t", "hostfs", "-o", channel, "none", channel], check=True)
    os.makedirs(os.path.join(channel, "req"), exist_ok=True)
    os.makedirs(os.path.join(channel, "resp"), exist_ok=True)
    zygote: Optional[subprocess.Popen[bytes]] = None
    if os.environ.get("HAECS_KERNEL_ZYGOTE", "1") != "0":  # 0: every module a new process
        zygote = subprocess.Popen(
            [MODULE_PYTHON, os.path.join(HERE, "zygote.py"), ZYGOTE_SOCKET],
            stdin=subprocess.DEVNULL,
        )
    with open(os.path.join(channel, "ready"), "w") as handle:
        handle.write("%d\n" % os.getpid())
    taken: set[str] = set()
    requests = os.path.join(channel, "req")
    pause = POLL_FIRST
    while not os.path.exists(os.path.join(channel, "stop")):
        names = [n for n in os.listdir(requests) if n.endswith(".json") and n not in taken]
        for name in sorted(names):
            taken.add(name)
            threading.Thread(target=answer, args=(channel, name), daemon=True).start()
        if names:
            pause = POLL_FIRST
        else:
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_IDLE)
        if zygote is not None and zygote.poll() is not None:
            # modules run as new processes from now on: slower, still right
            print("agent: the zygote ended (status %s)" % zygote.returncode, file=sys.stderr)
            zygote = None
            if os.path.exists(ZYGOTE_SOCKET):
                os.unlink(ZYGOTE_SOCKET)
    if zygote is not None:
        zygote.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
