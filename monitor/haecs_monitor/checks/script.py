"""Script check: run a program (never through a shell) and read its exit code.

Exit 0 is up, 1 is down, 2-255 is up with the weight code-2 (keepalived's
MISC_CHECK dynamic weight); death by a signal is down.

The program runs in its own process group, which is killed (SIGKILL) on
timeout, on cancellation and after it exits (no stray children live on);
with a minimal environment (PATH, LANG, HOME, HAECS_CHECK_ADDRESS,
HAECS_CHECK_PORT) plus the check's `env`; as the unprivileged `user`
(its primary group, no supplementary groups) when the monitor runs as
root.  Not root, the monitor cannot switch users and runs the program as
itself.  The environment's values are never logged: they may be secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import signal
import subprocess
from typing import Any, Optional

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import field_path
from haecs_monitor.checks.base import (
    CheckResult,
    CheckType,
    down,
    os_reason,
    timed_out,
    unknown,
    up,
    within,
)
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import Reader

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_BYTES = 2048


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    command = spec.texts("command")
    if not command:
        return down("no command")
    try:
        popen_options, home = _identity(spec.text("user"))
    except KeyError:
        return down("unknown user %r" % spec.text("user"))
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_environment(spec, address, port, home),
            cwd="/",
            start_new_session=True,
            close_fds=True,
            **popen_options,
        )
    except OSError as error:
        # Not started: whatever the reason, the server was not checked.
        return unknown("cannot run %s: %s" % (command[0], os_reason(error)))
    stderr = bytearray()
    collector = asyncio.ensure_future(_collect(process.stderr, stderr))
    started = asyncio.get_running_loop().time()  # the script's time starts once it runs
    try:
        await within(process.wait(), spec.timing.timeout)
    except asyncio.TimeoutError:
        result = timed_out(spec, started, " (killed)")
        _kill_group(process.pid)
        collector.cancel()
        await process.wait()
        return result
    except BaseException:  # cancelled: leave nothing running, not even a zombie
        _kill_group(process.pid)
        collector.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(process.wait(), 1.0)
        raise
    _kill_group(process.pid)  # whatever it left behind in its group
    await _finish(collector)
    return judge(process.returncode, bytes(stderr))


def judge(returncode: Optional[int], stderr: bytes = b"") -> CheckResult:
    said = _last_line(stderr)
    suffix = ": %s" % said if said else ""
    if returncode is None or returncode < 0:
        return down("killed by signal %d%s" % (-(returncode or 0), suffix))
    if returncode == 0:
        return up("exit 0%s" % suffix)
    if returncode == 1:
        return down("exit 1%s" % suffix)
    return up("exit %d: weight %d%s" % (returncode, returncode - 2, suffix), weight=returncode - 2)


async def _collect(stream: Optional[asyncio.StreamReader], kept: bytearray) -> None:
    """Keep the first STDERR_BYTES of the stream; drain and drop the rest."""
    if stream is None:
        return
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        if len(kept) < STDERR_BYTES:
            kept += chunk[: STDERR_BYTES - len(kept)]


async def _finish(collector: asyncio.Future[None]) -> None:
    """Give the stderr reader a moment to see EOF, then stop it."""
    try:
        await asyncio.wait_for(asyncio.shield(collector), 0.5)
    except (asyncio.TimeoutError, OSError, ValueError):
        collector.cancel()


def _last_line(stderr: bytes) -> str:
    lines = [
        line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()
    ]
    return lines[-1][:200] if lines else ""


def _identity(user: Optional[str]) -> tuple[dict[str, Any], Optional[str]]:
    """Popen arguments to run as `user`, and its home; none when we are not root."""
    if user is None or os.geteuid() != 0:
        return {}, None
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}, entry.pw_dir


def _environment(spec: CheckSpec, address: str, port: int, home: Optional[str]) -> dict[str, str]:
    env = {
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        "HOME": home or "/",
        "HAECS_CHECK_ADDRESS": address,
        "HAECS_CHECK_PORT": str(port),
    }
    env.update(spec.pairs("env"))
    return env


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- options


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _script(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {"user": script_user}
    if reader.require("command"):
        command = reader.command("command")
        if command is not None:
            params["command"] = command
    env = _env_option(reader)
    if env:
        params["env"] = env
    user = reader.text("user", _USER, "must be a user name")
    if user is not None:
        params["user"] = user
    return params


def _env_option(reader: Reader) -> tuple[ParamValue, ...]:
    data = reader.mapping("env")
    if data is None:
        return ()
    pairs: list[ParamValue] = []
    for name, value in sorted(data.items()):
        path = field_path(reader.at("env"), name)
        if not _ENV_NAME.fullmatch(name):
            reader.problems.add(path, "is not a valid environment variable name")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            # never show the value: it may be a secret
            reader.problems.add(path, "must be a string (or a number)")
            continue
        try:
            text = value if isinstance(value, str) else str(value)
        except ValueError:  # an integer too long to print
            reader.problems.add(path, "must be a string (or a number)")
            continue
        if "\0" in text:
            reader.problems.add(path, "must not contain a NUL character")
            continue
        pairs.append((name, text))
    return tuple(pairs)


def _detail(spec: CheckSpec) -> str:
    command = spec.texts("command")
    return command[0].rsplit("/", 1)[-1] if command else ""


SCRIPT = CheckType("script", ("command", "env", "user"), _script, check, _detail)
