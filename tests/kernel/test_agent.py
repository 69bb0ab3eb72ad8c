"""Tests of tests/kernel/with-agent and the haecs_kernel connection: the
controller on the host, every command and module inside the test kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
WITH_AGENT = HERE / "with-agent"
VENV_BIN = CHECKOUT / ".venv" / "bin"

pytestmark = pytest.mark.kernel


def _skip_if_unavailable() -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel runner needs root")
    if not shutil.which("linux.uml"):
        pytest.skip("user-mode-linux not installed (tests/kernel/install-deps)")


def test_playbook_runs_in_the_kernel_from_the_host(tmp_path: Path) -> None:
    _skip_if_unavailable()
    env = dict(
        os.environ,
        ANSIBLE_CONNECTION_PLUGINS=str(HERE / "agent" / "connection"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"),
        ANSIBLE_REMOTE_TEMP="/tmp/agent-selftest-remote",
        ANSIBLE_NOCOLOR="1",
        HOME=str(tmp_path),
    )
    done = subprocess.run(
        [
            str(WITH_AGENT),
            "--",
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "kernel,",
            "-c",
            "haecs_kernel",
            "-e",
            "ansible_python_interpreter=%s fetch_dir=%s" % (VENV_BIN / "python", tmp_path),
            str(HERE / "agent" / "selftest.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed=0" in done.stdout
    assert (tmp_path / "agent-selftest.txt").read_text() == "x" * 300000
    # The host itself was not touched: the namespace was the kernel's.
    assert (
        "agent-selftest"
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
    )
    assert not list((CHECKOUT / "build").glob("kernel-channel.*"))


def test_a_kernel_that_never_starts_is_reported(tmp_path: Path) -> None:
    _skip_if_unavailable()
    done = subprocess.run(
        [str(WITH_AGENT), "--timeout", "soon", "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 125
    assert "the kernel ended before its agent was ready" in done.stderr
    assert "--timeout wants whole seconds" in done.stderr


def test_the_command_status_passes_through(tmp_path: Path) -> None:
    _skip_if_unavailable()
    done = subprocess.run(
        [
            str(WITH_AGENT),
            "--",
            "sh",
            "-c",
            'test -e "$HAECS_KERNEL_CHANNEL/ready" || exit 9; exit 7',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 7, done.stderr


def test_usage_without_a_command() -> None:
    done = subprocess.run([str(WITH_AGENT)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "no command" in done.stderr


def _connection(netns: str) -> Any:
    """The haecs_kernel connection with its requests captured, not sent."""
    connection_loader.add_directory(str(HERE / "agent" / "connection"))
    connection = connection_loader.get("haecs_kernel", PlayContext(), None)
    connection.set_options(direct={"channel": "/nonexistent", "netns": netns})
    connection._connected = True
    return connection


def test_a_pipelined_module_runs_its_interpreter_without_the_shells() -> None:
    connection = _connection("lab-dir1")
    sent: list[list[str]] = []

    def call(request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request["argv"])
        return {"rc": 0, "stdout": "", "stderr": ""}

    connection._call = call
    module = "/bin/sh -c '/opt/python && sleep 0'"
    connection.exec_command(module, in_data=b"print(1)")
    connection.exec_command(module)  # nothing on stdin: not a pipelined module
    connection.exec_command("/bin/sh -c 'echo ~ && sleep 0'", in_data=b"x")
    connection.exec_command("/bin/sh -c '/opt/python -I && sleep 0'", in_data=b"x")
    netns = ["ip", "netns", "exec", "lab-dir1"]
    assert sent == [
        [*netns, "/opt/python"],
        [*netns, "/bin/sh", "-c", module],
        [*netns, "/bin/sh", "-c", "/bin/sh -c 'echo ~ && sleep 0'"],
        [*netns, "/bin/sh", "-c", "/bin/sh -c '/opt/python -I && sleep 0'"],
    ]
