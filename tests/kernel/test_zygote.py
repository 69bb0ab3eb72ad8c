"""tests/kernel/agent/zygote.py on the host: a script sent to the zygote ends
as it would under ``python /dev/stdin`` (status, output, exit handlers), and
the agent sends it there only when it is a pipelined module.  Entering a
network namespace is proven in the test kernel (agent/selftest.yml)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

AGENT = Path(__file__).resolve().parent / "agent"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, AGENT / ("%s.py" % name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guest_agent = _load("guest_agent")


@pytest.fixture(scope="module")
def zygote() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "zygote.sock")
        process = subprocess.Popen([sys.executable, str(AGENT / "zygote.py"), path])
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            assert process.poll() is None, "the zygote ended"
            assert time.monotonic() < deadline, "the zygote never listened"
            time.sleep(0.05)
        try:
            yield path
        finally:
            process.terminate()
            process.wait(10)


def run(zygote: str, script: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(guest_agent, "ZYGOTE_SOCKET", zygote)
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        stdin.write(script.encode())
        stdin.seek(0)
        status = guest_agent.run_in_zygote({"netns": None, "cwd": None}, (stdin, stdout, stderr))
        stdout.seek(0)
        stderr.seek(0)
        return status, stdout.read().decode(), stderr.read().decode()


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("print('hi')", 0),
        ("import sys; sys.exit(4)", 4),
        ("import sys; sys.exit(None)", 0),
        ("import sys; sys.exit('bad')", 1),
        ("raise ValueError('boom')", 1),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
    ],
)
def test_a_script_ends_as_under_its_own_interpreter(
    zygote: str, monkeypatch: pytest.MonkeyPatch, script: str, status: int
) -> None:
    assert run(zygote, script, monkeypatch)[0] == status


def test_output_errors_and_exit_handlers_are_the_scripts(
    zygote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = (
        "import atexit, sys, __main__\n"
        "atexit.register(print, 'at exit')\n"
        "print(sys.argv, __main__.__file__, __name__)\n"
        "print('ansible' in sys.modules, file=sys.stderr)\n"
        "raise SystemExit('gone')\n"
    )
    status, out, err = run(zygote, script, monkeypatch)
    assert status == 1
    assert out == "['/dev/stdin'] /dev/stdin __main__\nat exit\n"
    assert err == "True\ngone\n"  # Ansible's module_utils were loaded already


def test_a_traceback_goes_to_stderr(zygote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, err = run(zygote, "print('before')\n1 / 0\n", monkeypatch)
    assert (status, out) == (1, "before\n")
    assert err.startswith("Traceback") and "ZeroDivisionError" in err


def test_one_run_leaves_nothing_for_the_next(zygote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run(zygote, "import sys, os; sys.modules['os'].environ['LEFT'] = '1'; LEFT = 1", monkeypatch)
    status, out, _err = run(
        zygote, "import os; print(os.environ.get('LEFT'), 'LEFT' in globals())", monkeypatch
    )
    assert (status, out) == (0, "None False\n")


def test_only_a_pipelined_module_goes_to_the_zygote(
    zygote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guest_agent, "ZYGOTE_SOCKET", zygote)
    python = guest_agent.MODULE_PYTHON
    assert guest_agent.zygote_header([python], b"x") == {"netns": None}
    assert guest_agent.zygote_header(["ip", "netns", "exec", "a", python], b"x") == {"netns": "a"}
    not_for_it: list[tuple[list[str], bytes]] = [
        ([python], b""),  # nothing on stdin: not a pipelined module
        ([python, "-c", "pass"], b"x"),
        (["/usr/bin/python3"], b"x"),  # another interpreter
        (["/bin/sh", "-c", python], b"x"),
        (["ip", "netns", "exec", "a", "/bin/sh"], b"x"),
    ]
    for argv, stdin in not_for_it:
        assert guest_agent.zygote_header(argv, stdin) is None, argv
    monkeypatch.setattr(guest_agent, "ZYGOTE_SOCKET", zygote + ".absent")
    assert guest_agent.zygote_header([python], b"x") is None  # not listening (yet)


def test_a_request_without_its_descriptors_is_refused(zygote: str) -> None:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.connect(zygote)
        channel.sendall(b'{"netns": null}')
        answer: Any = channel.makefile("rb").readline()
    assert answer.startswith(b"error want 3 descriptors")
