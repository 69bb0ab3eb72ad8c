"""The haecs.lvs.netns connection's own parts: the name's rules, the checks
that the namespace exists and that we are root, and the command it runs.

The real thing (ip netns exec as root) is
tests/integration/targets/connection_netns (make integration-host)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from typing import Any, List, Tuple

import ansible.constants as C
import pytest
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.connection.local import Connection as LocalConnection

from ansible_collections.haecs.lvs.plugins.connection import netns

RULE = "a single file name: not empty, no '/', not '.' or '..', at most 255 bytes"


@pytest.mark.parametrize(
    "name", ["haecs_a", "dir1", "odd name'$(exit 3)", "-x", "a" * 255, "é" * 127]
)
def test_valid_names_are_kept(name: str) -> None:
    assert netns.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "/", "a/b", "/run/netns/x", ".", "..", "a\0b", "a" * 256, "é" * 128]
)
def test_invalid_name_says_the_variable_and_the_rule(name: str) -> None:
    with pytest.raises(AnsibleConnectionFailure) as error:
        netns.check_name(name)
    assert str(error.value).startswith("haecs_netns=%r is not a network namespace name" % name)
    assert RULE in str(error.value)


def test_unset_name_says_the_variable() -> None:
    with pytest.raises(AnsibleConnectionFailure, match=r"^haecs_netns is not set: .* /run/netns"):
        netns.check_name(None)


def test_name_of_another_type() -> None:
    with pytest.raises(
        AnsibleConnectionFailure, match=r"haecs_netns must be a string, .*, not int"
    ):
        netns.check_name(5)


def test_missing_namespace(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "lab 1")
    with pytest.raises(AnsibleConnectionFailure) as error:
        netns.netns_path("lab 1", str(tmp_path))
    assert str(error.value) == (
        "haecs_netns='lab 1': no such network namespace (%s does not exist; ip netns list "
        "shows the names, ip netns add 'lab 1' makes it)" % path
    )


def test_a_plain_file_is_no_namespace(tmp_path: Any) -> None:
    (tmp_path / "stale").write_text("")
    with pytest.raises(AnsibleConnectionFailure, match=r"'stale': .* is not a network namespace"):
        netns.netns_path("stale", str(tmp_path))


def test_a_namespace_file_is_found() -> None:
    # /proc/self/ns/net is a network namespace's file, like /run/netns/NAME.
    assert netns.netns_path("net", "/proc/self/ns") == "/proc/self/ns/net"


def test_default_folder_is_iproute2s() -> None:
    assert netns.NETNS_DIR == "/run/netns"


def test_root_only() -> None:
    netns.check_root(0)
    with pytest.raises(AnsibleConnectionFailure, match=r"must run as root .* runs as uid 1000"):
        netns.check_root(1000)


CMDS = [
    "/bin/sh -c 'echo ~ && sleep 0'",
    'echo "$HOME" `id -u` $(true); exit 3',
    "printf '%s\\n' \"a b\" 'c\\'d' \\\\",
]


@pytest.mark.parametrize("cmd", CMDS)
def test_wrapped_command_is_one_exec_of_quoted_words(cmd: str) -> None:
    name = "odd name'$(exit 3)"
    wrapped = netns.wrap_command(cmd, name, "/bin/sh", "/usr/sbin/ip")
    assert wrapped.startswith("exec /usr/sbin/ip netns exec ")
    assert shlex.split(wrapped) == [
        "exec",
        "/usr/sbin/ip",
        "netns",
        "exec",
        name,
        "/bin/sh",
        "-c",
        cmd,
    ]


@pytest.mark.parametrize("cmd", CMDS)
def test_the_shell_passes_the_words_on_unchanged(tmp_path: Any, cmd: str) -> None:
    """Through /bin/sh -c, as ansible.builtin.local runs it: a fake ip gets
    exactly the words, and nothing of the name or the command ran."""
    ip = tmp_path / "ip"
    ip.write_text('#!/bin/sh\nprintf "%s\\0" "$@"\n')
    ip.chmod(0o755)
    name = "odd name'$(touch %s)" % (tmp_path / "expanded")
    wrapped = netns.wrap_command(cmd, name, "/bin/sh", str(ip))
    out = subprocess.run(["/bin/sh", "-c", wrapped], check=True, capture_output=True).stdout
    assert out.split(b"\0")[:-1] == [
        w.encode() for w in ["netns", "exec", name, "/bin/sh", "-c", cmd]
    ]
    assert not (tmp_path / "expanded").exists()


def test_find_ip() -> None:
    assert os.path.basename(netns.find_ip()) == "ip"


def test_no_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(AnsibleConnectionFailure, match="needs the ip command"):
        netns.find_ip()


class Fakes:
    """The plugin with its checks recorded instead of done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, euid: int = 0) -> None:
        self.checked: List[str] = []
        self.ran: List[Tuple[str, Any, bool]] = []
        monkeypatch.setattr(os, "geteuid", lambda: euid)
        monkeypatch.setattr(netns, "netns_path", self.netns_path)
        monkeypatch.setattr(netns, "find_ip", lambda: "/sbin/ip")
        monkeypatch.setattr(
            LocalConnection,
            "exec_command",
            lambda _connection, cmd, in_data=None, sudoable=True: self.local_exec(
                cmd, in_data, sudoable
            ),
        )
        monkeypatch.setattr(C, "DEFAULT_EXECUTABLE", "/bin/bash -e")
        self.connection = netns.Connection(PlayContext())

    def netns_path(self, name: str) -> str:
        self.checked.append(name)
        return "/run/netns/" + name

    def local_exec(self, cmd: str, in_data: Any, sudoable: bool) -> Tuple[int, bytes, bytes]:
        self.ran.append((cmd, in_data, sudoable))
        return 0, b"out", b"err"

    def options(self, monkeypatch: pytest.MonkeyPatch, netns_name: Any) -> None:
        monkeypatch.setattr(self.connection, "get_option", {"netns": netns_name}.get)


def test_exec_command_runs_local_with_the_wrapped_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = Fakes(monkeypatch)
    fakes.options(monkeypatch, "lab")
    assert fakes.connection.exec_command("echo hi", in_data=b"x", sudoable=False) == (
        0,
        b"out",
        b"err",
    )
    fakes.connection.exec_command("echo again")
    assert fakes.ran == [
        ("exec /sbin/ip netns exec lab /bin/bash -c 'echo hi'", b"x", False),
        ("exec /sbin/ip netns exec lab /bin/bash -c 'echo again'", None, True),
    ]
    assert fakes.checked == ["lab"]  # once per connection
    assert fakes.connection.transport == "local"


@pytest.mark.parametrize(
    "euid, name, message",
    [
        (1000, "lab", "must run as root"),
        (0, None, "haecs_netns is not set"),
        (0, "a/b", "haecs_netns='a/b' is not a network namespace name"),
    ],
)
def test_a_failed_check_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, euid: int, name: Any, message: str
) -> None:
    fakes = Fakes(monkeypatch, euid)
    fakes.options(monkeypatch, name)
    with pytest.raises(AnsibleConnectionFailure, match=message):
        fakes.connection.exec_command("true")
    with pytest.raises(AnsibleConnectionFailure, match=message):
        fakes.connection._connect()
    assert fakes.ran == []
    assert not fakes.connection._connected
