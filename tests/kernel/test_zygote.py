"""tests/kernel/agent/zygote.py on the host: a module sent to the zygote ends
as it would under ``python /dev/stdin`` (status, output, exit handlers,
interpreter shutdown), one whose zip carries other ansible files than the
interpreter's runs in a new interpreter, and the agent sends only pipelined
modules there.  Entering a network namespace is proven in the test kernel
(agent/selftest.yml)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import ansible
import pytest

AGENT = Path(__file__).resolve().parent / "agent"
CHECKOUT = AGENT.parents[2]
SITE = Path(ansible.__file__).resolve().parents[1]
STUB = '__version__="%s"\n' % ansible.__version__


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
            assert process.returncode == -signal.SIGTERM  # it served every test


def module(body: str, files: dict[str, bytes] | None = None) -> str:
    """`body` with a zip_data line as an AnsiballZ wrapper has, its zip
    holding `files` (by default: basic.py as this interpreter has it)."""
    if files is None:
        files = {
            "ansible/__init__.py": STUB.encode(),
            "ansible/module_utils/__init__.py": b"",
            "ansible/module_utils/basic.py": (SITE / "ansible/module_utils/basic.py").read_bytes(),
        }
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return "%s\nzip_data='%s',\n" % (body, base64.b64encode(data.getvalue()).decode())


def run(
    zygote: str, script: str, monkeypatch: pytest.MonkeyPatch, cwd: str | None = None
) -> tuple[int, str, str]:
    monkeypatch.setattr(guest_agent, "ZYGOTE_SOCKET", zygote)
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        stdin.write(script.encode())
        stdin.seek(0)
        status = guest_agent.run_in_zygote({"netns": None, "cwd": cwd}, (stdin, stdout, stderr))
        assert status is not None
        stdout.seek(0)
        stderr.seek(0)
        return (
            status,
            stdout.read().decode(errors="surrogateescape"),
            stderr.read().decode(errors="surrogateescape"),
        )


def fresh(script: str, cwd: str | None = None) -> tuple[int, str, str]:
    """The same script under its own interpreter, as before the zygote."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(script.encode())
        stdin.seek(0)
        done = subprocess.run(
            [sys.executable, "/dev/stdin"],
            stdin=stdin,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            cwd=cwd,
            check=False,
        )
    return done.returncode, done.stdout, done.stderr


IN_ZYGOTE = "import os; print(os.environ.get('HAECS_KERNEL_ZYGOTE_PID') is not None)"


@pytest.mark.parametrize(
    "body",
    [
        "print('hi')",
        "import sys; sys.exit(4)",
        "import sys; sys.exit(None)",
        "import sys; sys.exit('bad')",
        "import sys; sys.exit(256)",
        "raise ValueError('boom')",
        "print('before')\n1 / 0",
        "print(",  # a syntax error: no traceback, only where
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
        "raise KeyboardInterrupt",
        "print('\\udcff')",  # the streams' own error handler (surrogateescape)
        "import sys; print(sys.argv, __name__, __file__, sys.stdin.read()[:6])",
        "import atexit; atexit.register(print, 'at exit'); print('first')",
        "import sys; sys.stdout = open('/dev/null', 'w'); print('x', file=sys.__stdout__)",
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('joined'))).start()",
        "import logging, sys; logging.basicConfig(stream=sys.stderr); logging.warning('w')",
    ],
)
def test_a_module_ends_as_under_its_own_interpreter(
    zygote: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str
) -> None:
    mark = tmp_path / "ran-in-the-zygote"
    script = module(
        "import os\nif os.environ.get('HAECS_KERNEL_ZYGOTE_PID'): open(%r, 'w').close()\n%s"
        % (str(mark), body)
    )
    status, out, err = run(zygote, script, monkeypatch)
    try:
        compile(body, "body", "exec")
    except SyntaxError:
        pass  # nothing of it runs, the mark neither
    else:
        assert mark.exists()
        mark.unlink()
    expected = fresh(script)
    assert not mark.exists()
    assert (status, out) == expected[:2]
    assert err.splitlines()[-1:] == expected[2].splitlines()[-1:]
    if "Traceback" in expected[2]:  # the same frames: the script's, none of the zygote's
        assert err == expected[2]


def test_the_interpreter_shuts_down_as_its_own_would(
    zygote: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body = (
        "left = open('unclosed.txt', 'w'); left.write('buffered')\n"
        "class Last:\n"
        "    def __del__(self, _open=open): _open('collected.txt', 'w').write('yes')\n"
        "keep = Last()\n"
    )
    assert run(zygote, module(body), monkeypatch, cwd=str(tmp_path))[0] == 0
    assert (tmp_path / "unclosed.txt").read_text() == "buffered"
    assert (tmp_path / "collected.txt").read_text() == "yes"


def test_one_run_leaves_nothing_for_the_next(zygote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run(zygote, module("import os; os.environ['LEFT'] = '1'; LEFT = 1"), monkeypatch)
    status, out, _err = run(
        zygote, module("import os; print(os.environ.get('LEFT'), 'LEFT' in globals())"), monkeypatch
    )
    assert (status, out) == (0, "None False\n")


def test_ansible_files_other_than_the_interpreters_run_in_a_new_one(
    zygote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    basic = (SITE / "ansible/module_utils/basic.py").read_bytes()
    others = {
        "edited basic.py": {"ansible/module_utils/basic.py": basic + b"\n# edited\n"},
        "a role's own module_utils": {"ansible/module_utils/custom_x.py": b"X = 1\n"},
        "another ansible-core": {"ansible/__init__.py": b'__version__="2.0.0"\n'},
    }
    for what, files in others.items():
        assert run(zygote, module(IN_ZYGOTE, files), monkeypatch)[1] == "False\n", what
    assert run(zygote, IN_ZYGOTE, monkeypatch)[1] == "False\n"  # no zip at all
    assert run(zygote, module(IN_ZYGOTE), monkeypatch)[1] == "True\n"


def test_a_real_ansiballz_module_runs_in_the_zygote(
    zygote: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The wrapper the controller sends, kept by Ansible for this test.
    env = dict(
        os.environ,
        ANSIBLE_KEEP_REMOTE_FILES="1",
        ANSIBLE_REMOTE_TMP=str(tmp_path / "remote"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"),
        HOME=str(tmp_path),
    )
    done = subprocess.run(
        [
            str(CHECKOUT / ".venv/bin/ansible"),
            "localhost",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
            "-m",
            "ansible.builtin.command",
            "-a",
            "printenv HAECS_KERNEL_ZYGOTE_PID",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wrapper = next((tmp_path / "remote").glob("*/AnsiballZ_command.py")).read_text()
    status, out, err = run(zygote, wrapper, monkeypatch)
    assert status == 0, (out, err, done.stdout)
    result = json.loads(out)
    assert result["rc"] == 0 and int(result["stdout"]) > 1


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


def test_a_zygote_gone_is_no_answer_so_the_agent_runs_the_module_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = str(tmp_path / "gone.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(path)  # its file stays; nobody listens
    monkeypatch.setattr(guest_agent, "ZYGOTE_SOCKET", path)
    with tempfile.TemporaryFile() as handle:
        assert guest_agent.run_in_zygote({"netns": None}, (handle, handle, handle)) is None


def test_bad_requests_are_refused_and_the_zygote_serves_on(
    zygote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.connect(zygote)  # and gone at once
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.connect(zygote)
        channel.sendall(b'{"netns": null}')
        answer = channel.makefile("rb").readline()
    assert answer.startswith(b"error want 3 descriptors")
    assert run(zygote, module("print('still here')"), monkeypatch)[1] == "still here\n"
