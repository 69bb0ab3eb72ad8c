"""The script check: real processes, exit codes, timeouts, users, environment."""

from __future__ import annotations

import os
import time

import pytest
from checkhelp import probe, spec
from haecs_monitor.checks.script import judge


def script(*command: str, timeout: float = 2.0, **params: object) -> object:
    return probe(spec("script", 80, timeout=timeout, command=tuple(command), **params))  # type: ignore[arg-type]


def test_true_is_up() -> None:
    result = script("/bin/true")
    assert result.up and result.weight is None  # type: ignore[attr-defined]


def test_false_is_down() -> None:
    result = script("/bin/false")
    assert not result.up  # type: ignore[attr-defined]
    assert result.detail == "exit 1"  # type: ignore[attr-defined]


def test_exit_five_is_up_with_weight_three() -> None:
    result = script("/bin/sh", "-c", "exit 5")
    assert result.up and result.weight == 3  # type: ignore[attr-defined]


def test_exit_codes() -> None:
    assert judge(0).up
    assert not judge(1).up
    assert judge(2).weight == 0 and judge(2).up
    assert judge(255).weight == 253
    killed = judge(-9)
    assert not killed.up and killed.detail == "killed by signal 9"
    assert judge(1, b"first\nreason: disk full\n").detail == "exit 1: reason: disk full"


def test_timeout_kills_the_process_group(tmp_path: object) -> None:
    marker = os.path.join(str(tmp_path), "child.pid")
    started = time.monotonic()
    result = script("/bin/sh", "-c", "sleep 30 & echo $! > %s; wait" % marker, timeout=0.5)
    elapsed = time.monotonic() - started
    assert not result.up  # type: ignore[attr-defined]
    assert result.detail == "timed out after 0.5s (killed)"  # type: ignore[attr-defined]
    assert elapsed < 3
    with open(marker) as handle:
        child = int(handle.read())
    time.sleep(0.1)
    assert not _alive(child), "the script's child survived the timeout"


def test_leftover_children_are_killed_after_exit(tmp_path: object) -> None:
    marker = os.path.join(str(tmp_path), "child.pid")
    result = script("/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $! > %s; exit 0" % marker)
    assert result.up  # type: ignore[attr-defined]
    with open(marker) as handle:
        child = int(handle.read())
    time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_minimal_environment_plus_env() -> None:
    check = 'test "$TOKEN" = s3cret && test "$HAECS_CHECK_PORT" = 80 && test -z "$SHELL_SECRET" && test "$HAECS_CHECK_ADDRESS" = 127.0.0.1'
    os.environ["SHELL_SECRET"] = "leak"
    try:
        result = script("/bin/sh", "-c", check, env=(("TOKEN", "s3cret"),))
    finally:
        del os.environ["SHELL_SECRET"]
    assert result.up, result.detail  # type: ignore[attr-defined]
    assert "s3cret" not in result.detail  # type: ignore[attr-defined]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_runs_as_the_unprivileged_user() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    result = script(
        "/bin/sh",
        "-c",
        'test $(id -u) = %d && test $(id -g) = %d && test "$(id -G)" = %d'
        % (nobody.pw_uid, nobody.pw_gid, nobody.pw_gid),
        user="nobody",
    )
    assert result.up, result.detail  # type: ignore[attr-defined]


@pytest.mark.skipif(os.geteuid() != 0, reason="user lookup only happens as root")
def test_unknown_user_is_down() -> None:
    result = script("/bin/true", user="no-such-user-haecs")
    assert not result.up and "unknown user" in result.detail  # type: ignore[attr-defined]


def test_missing_program_is_down() -> None:
    result = script("/nonexistent/check")
    assert not result.up  # type: ignore[attr-defined]
    assert result.detail == "cannot run /nonexistent/check: No such file or directory"  # type: ignore[attr-defined]


def test_no_command_is_down() -> None:
    assert not probe(spec("script", 80)).up


def test_stderr_is_bounded_and_last_line_reported() -> None:
    result = script("/bin/sh", "-c", "yes x | head -c 1000000 >&2; echo 'final word' >&2; exit 1")
    assert not result.up  # type: ignore[attr-defined]
    assert result.detail.startswith("exit 1")  # type: ignore[attr-defined]
    assert len(result.detail) < 260  # type: ignore[attr-defined]


def test_cancellation_kills_the_script(tmp_path: object) -> None:
    import asyncio

    from haecs_monitor.checks import script as script_check

    marker = os.path.join(str(tmp_path), "pid")

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(
            script_check.check(
                spec(
                    "script",
                    80,
                    timeout=10,
                    command=("/bin/sh", "-c", "echo $$ > %s; sleep 30" % marker),
                ),
                "127.0.0.1",
                80,
            )
        )
        for _unused in range(100):
            await asyncio.sleep(0.02)
            if os.path.exists(marker) and os.path.getsize(marker):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # let the loop reap the killed process

    asyncio.run(cancel_soon())
    with open(marker) as handle:
        pid = int(handle.read())
    time.sleep(0.1)
    assert not _alive(pid)
