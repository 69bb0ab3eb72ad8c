"""Runs pipelined Ansible modules in the test kernel from a warm interpreter.

Started by ``guest_agent.py`` inside the kernel, with the interpreter that
modules run with (``tests/kernel/agent/python``).  A module run there costs a
new Python (0.7-1.0 s in user-mode Linux) plus ``import
ansible.module_utils.basic`` (2.3-2.9 s) before the module does anything.
This process imports those once; for each module it forks, and the child
runs the module's AnsiballZ wrapper (read from its stdin) as ``python
/dev/stdin`` would, inside a network namespace the way ``ip netns exec``
enters one.  The wrapper's own imports then find ansible's module_utils
loaded: the very files (this virtualenv's) that the controller zipped.  The
collection's code still comes from the module's zip.

Protocol, on a Unix stream socket: the agent sends one line of JSON
(``{"netns": name or null, "cwd": path or null}``) with three descriptors
(stdin, stdout, stderr) attached; the answer is the exit status as a line,
``-N`` for a signal N.  Standard library only.
"""

from __future__ import annotations

import array
import ctypes
import gc
import importlib
import json
import os
import selectors
import socket
import sys
from typing import Any

# What every module run imports; a name missing here just loads in the child.
PRELOAD = (
    "ansible.module_utils.basic",
    "ansible.module_utils._internal._ansiballz._loader",
    "ansible.module_utils.common.json",
    "ansible.module_utils.common.text.converters",
    "pyroute2",
    "base64",
    "runpy",
    "shutil",
    "tempfile",
    "zipfile",
)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2
ST_RDONLY = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "%s: %s" % (what, os.strerror(errno)))


def enter_netns(name: str) -> None:
    """What ``ip netns exec NAME`` does before it runs its command
    (iproute2's netns_switch): the namespace, a private mount namespace with
    the namespace's own /sys, and /etc/netns/NAME bound over /etc."""
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), "setns %s" % name)
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _check(_libc.mount(b"", b"/", b"none", MS_SLAVE | MS_REC, None), "mount --make-rslave /")
    flags = 0
    if _libc.umount2(b"/sys", MNT_DETACH) != 0 and os.statvfs("/sys").f_flag & ST_RDONLY:
        flags = MS_RDONLY
    _check(_libc.mount(name.encode(), b"/sys", b"sysfs", flags, None), "mount /sys")
    etc = os.path.join("/etc/netns", name)
    if os.path.isdir(etc):
        for entry in os.listdir(etc):
            source = os.path.join(etc, entry).encode()
            target = os.path.join("/etc", entry).encode()
            _libc.mount(source, target, b"none", 4096, None)  # MS_BIND, as ip does: best effort


def _exit_status(code: Any) -> int:
    """SystemExit's code as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run_module(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become ``python /dev/stdin`` for the module."""
    import atexit
    import threading
    import traceback
    import types

    atexit._clear()  # type: ignore[attr-defined]  # the zygote's, not the module's
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    os.environ["HAECS_KERNEL_ZYGOTE_PID"] = str(os.getppid())  # for the agent's own test
    status = 1
    try:
        if request.get("netns"):
            enter_netns(request["netns"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        source = sys.stdin.buffer.read()
        main = types.ModuleType("__main__")
        main.__file__ = "/dev/stdin"
        sys.modules["__main__"] = main
        sys.argv = ["/dev/stdin"]
        sys.path[0] = os.path.dirname(os.path.realpath("/dev/stdin"))
        exec(compile(source, "/dev/stdin", "exec"), main.__dict__)
        status = 0
    except SystemExit as done:
        status = _exit_status(done.code)
    except BaseException:  # as the interpreter: a traceback, status 1
        traceback.print_exc()
        status = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # join threads, as at exit
        atexit._run_exitfuncs()  # type: ignore[attr-defined]
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 120  # the interpreter's status when flushing at exit fails
    return status


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _address = connection.recvmsg(
        65536, socket.CMSG_SPACE(3 * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return json.loads(data), list(fds)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd: (pid, connection)
    while True:
        for key, _events in selector.select():
            if key.data is None:
                connection, _address = listener.accept()
                try:
                    request, fds = _receive(connection)
                    if len(fds) != 3:
                        raise ValueError("want 3 descriptors, got %d" % len(fds))
                except (OSError, ValueError) as error:
                    connection.sendall(b"error %s\n" % str(error).encode())
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    for other_pidfd, (_other, other_connection) in children.items():
                        os.close(other_pidfd)
                        other_connection.close()
                    listener.close()
                    selector.close()
                    connection.close()
                    os._exit(run_module(request, fds))
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, connection)
                selector.register(pidfd, selectors.EVENT_READ, pidfd)
            else:
                pidfd = key.data
                selector.unregister(pidfd)
                os.close(pidfd)
                pid, connection = children.pop(pidfd)
                _pid, wait_status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(wait_status)
                try:
                    connection.sendall(b"%d\n" % code)
                except OSError:
                    pass  # the agent gave up on it
                connection.close()


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import what modules will import; returns what could not be."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    gc.collect()
    gc.freeze()  # fewer pages written in each child by the collector
    return missing


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: zygote.py SOCKET", file=sys.stderr)
        return 2
    missing = preload()
    if missing:
        print("zygote: not preloaded: %s" % ", ".join(missing), file=sys.stderr)
    serve(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
