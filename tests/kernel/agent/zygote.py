"""Runs pipelined Ansible modules in the test kernel from a warm interpreter.

Started by ``guest_agent.py`` inside the kernel, with the interpreter that
modules run with (``tests/kernel/agent/python``).  A module run there costs a
new Python (0.7-1.0 s in user-mode Linux) plus ``import
ansible.module_utils.basic`` (2.3-2.9 s) before the module does anything.
This process imports those once; for each module it forks, and the child
runs the module's AnsiballZ wrapper (read from /dev/stdin) as ``python
/dev/stdin`` would, inside a network namespace the way ``ip netns exec``
enters one.  The wrapper's imports then find ansible's module_utils loaded.
That is only right when the module's zip carries the very files this
interpreter has: the child compares them byte for byte and, on any
difference (another ansible-core, a role's own module_utils), executes a
new interpreter as before.  The collection's code comes from the zip.

Protocol, on a Unix stream socket: the agent sends one line of JSON
(``{"netns": name or null, "cwd": path or null}``) with three descriptors
(stdin, stdout, stderr) attached; the answer is the exit status as a line
(``-N`` for a signal N), or ``error ...``.  Standard library only.
"""

from __future__ import annotations

import array
import atexit
import base64
import binascii
import ctypes
import gc
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import selectors
import signal
import socket
import sys
import types
import zipfile
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
# In the zip these two are stubs (pkgutil.extend_path and the version).
STUBS = ("ansible/__init__.py", "ansible/module_utils/__init__.py")
ZIP_DATA = re.compile(rb"^zip_data='([A-Za-z0-9+/=]*)',$", re.MULTILINE)
REQUEST_SECONDS = 5.0
_ansible = {"version": ""}  # this interpreter's, found by preload()
# Its module_utils and modules, read once (about 2.6 MB): a child compares a
# zip with them without a file system call (each one is slow in UML).
_ansible_files: dict[str, bytes] = {}

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2
MS_BIND = 4096
ST_RDONLY = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


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
        _check(_libc.setns(fd, CLONE_NEWNET), "setting the network namespace")
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS), "unshare failed")
    _check(_libc.mount(b"", b"/", b"none", MS_SLAVE | MS_REC, None), '"mount --make-rslave /"')
    flags = 0
    if _libc.umount2(b"/sys", MNT_DETACH) != 0:
        try:
            if os.statvfs("/sys").f_flag & ST_RDONLY:
                flags = MS_RDONLY
        except OSError:
            pass  # no sysfs there: good
    _check(_libc.mount(name.encode(), b"/sys", b"sysfs", flags, None), "mount of /sys failed")
    etc = os.path.join("/etc/netns", name)
    if os.path.isdir(etc):
        for entry in os.listdir(etc):
            source, target = os.path.join(etc, entry), os.path.join("/etc", entry)
            if _libc.mount(source.encode(), target.encode(), b"none", MS_BIND, None) != 0:
                errno = ctypes.get_errno()
                print(
                    "Bind %s -> %s failed: %s" % (source, target, os.strerror(errno)),
                    file=sys.stderr,
                )


def same_ansible(source: bytes) -> bool:
    """Whether the module's zip carries this interpreter's own ansible files,
    byte for byte (the two package stubs: of this version)."""
    found = ZIP_DATA.search(source)
    if found is None:
        return False
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(found.group(1))))
    except (binascii.Error, zipfile.BadZipFile):
        return False
    version = ('__version__="%s"' % _ansible["version"]).encode()
    with archive:
        for name in archive.namelist():
            if not name.startswith("ansible/") or name.endswith("/"):
                continue
            if name == STUBS[0] and version not in archive.read(name):
                return False
            if name in STUBS:
                continue
            if _ansible_files.get(name) != archive.read(name):
                return False
    return True


def run_module(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become ``python /dev/stdin`` for the module.
    SystemExit leaves through the caller, to the interpreter's own exit, as
    it would from the module's own Python; so does the returned status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)  # the streams were flushed before the fork
        os.close(fd)
    if request.get("netns"):
        try:
            enter_netns(request["netns"])
        except OSError as error:
            print(
                'Cannot open network namespace "%s": %s' % (request["netns"], error),
                file=sys.stderr,
            )
            return 255
    if request.get("cwd"):
        os.chdir(request["cwd"])
    # Python opens the script by its name: fd 0 keeps its own offset.
    with open("/dev/stdin", "rb") as script:
        source = script.read()
    if not same_ansible(source):
        os.execv(sys.executable, [sys.executable, "/dev/stdin"])
    os.environ["HAECS_KERNEL_ZYGOTE_PID"] = str(os.getppid())  # for the agent's own test
    main = types.ModuleType("__main__")
    main.__file__ = "/dev/stdin"
    sys.modules["__main__"] = main
    sys.argv = ["/dev/stdin"]
    sys.path[0] = os.path.dirname(os.path.realpath("/dev/stdin"))
    try:
        exec(compile(source, "/dev/stdin", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as error:  # as the interpreter: the traceback, from the script down
        trace = error.__traceback__
        error.__traceback__ = trace.tb_next if trace else None  # what excepthook prints
        sys.excepthook(type(error), error, error.__traceback__)
        if isinstance(error, KeyboardInterrupt):  # Python ends by SIGINT then
            atexit._run_exitfuncs()  # type: ignore[attr-defined]
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        return 1
    return 0


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _address = connection.recvmsg(
        65536, socket.CMSG_SPACE(3 * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    received = list(fds)
    try:
        request = json.loads(data)
        if not isinstance(request, dict):
            raise ValueError("the request is not a JSON object")
        if len(received) != 3:
            raise ValueError("want 3 descriptors, got %d" % len(received))
    except ValueError:
        for fd in received:
            os.close(fd)
        raise
    return request, received


def _answer(connection: socket.socket, text: bytes) -> None:
    try:
        connection.sendall(text)
    except OSError:
        pass  # the agent gave up on it
    connection.close()


class _Child(BaseException):
    """Unwinds a forked child out of the server loop, to exit as a program does."""

    def __init__(self, request: dict[str, Any], fds: list[int]) -> None:
        super().__init__()
        self.request = request
        self.fds = fds


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
                connection.settimeout(REQUEST_SECONDS)
                try:
                    request, fds = _receive(connection)
                except (OSError, ValueError) as error:
                    _answer(connection, b"error %s\n" % str(error).encode())
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    for other_pidfd, (_other, other_connection) in children.items():
                        os.close(other_pidfd)
                        other_connection.close()
                    selector.close()
                    listener.close()
                    connection.close()
                    raise _Child(request, fds)
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
                _answer(connection, b"%d\n" % os.waitstatus_to_exitcode(wait_status))


def _stub_packages() -> str:
    """``ansible`` and ``ansible.module_utils`` as a module's zip makes them
    (stubs with a search path, not the controller's ``ansible/__init__``),
    over this interpreter's files."""
    spec = importlib.util.find_spec("ansible")
    if spec is None or not spec.submodule_search_locations:
        return ""
    root = next(iter(spec.submodule_search_locations))
    release: dict[str, Any] = {}
    with open(os.path.join(root, "release.py"), "rb") as handle:
        exec(compile(handle.read(), os.path.join(root, "release.py"), "exec"), release)
    for name, folder in (
        ("ansible", root),
        ("ansible.module_utils", os.path.join(root, "module_utils")),
    ):
        package_spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        package_spec.submodule_search_locations = [folder]
        package = importlib.util.module_from_spec(package_spec)
        package.__file__ = os.path.join(folder, "__init__.py")
        sys.modules[name] = package
    _ansible["version"] = release["__version__"]
    sys.modules["ansible"].__version__ = release["__version__"]  # type: ignore[attr-defined]
    sys.modules["ansible"].__author__ = release["__author__"]  # type: ignore[attr-defined]
    sys.modules["ansible"].module_utils = sys.modules["ansible.module_utils"]  # type: ignore[attr-defined]
    return root


def _read_ansible_files(root: str) -> None:
    """The module_utils and modules under `root`, by their names in a zip."""
    site = os.path.dirname(root)
    for folder in ("module_utils", "modules"):
        for where, _dirs, names in os.walk(os.path.join(root, folder)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(where, name)
                    with open(path, "rb") as handle:
                        _ansible_files[os.path.relpath(path, site)] = handle.read()


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import what modules will import; returns what could not be."""
    root = _stub_packages()
    if root:
        _read_ansible_files(root)
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
    try:
        serve(argv[1])
    except _Child as raised:
        child = raised
    # Outside the handler: the module's own exceptions chain to nothing.
    return run_module(child.request, child.fds)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
