"""Tests of tests/kernel/run, the real-kernel test runner.

    pytest tests/kernel -m "not qemu"     host + UML backends (about 15 s)
    pytest tests/kernel -m qemu           the QEMU backend (a few minutes, TCG)

Each guest backend is booted few times: one "probe" boot runs a script that
exercises everything observable from the inside (environment, cwd, IPVS,
writes to the read-only host, the shared folder, live output) and the tests
assert on what it printed and on what the host sees afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUN = HERE / "run"
CHECKOUT = HERE.parents[1]

GUEST_BACKENDS = [
    pytest.param("uml", marks=pytest.mark.kernel, id="uml"),
    pytest.param("qemu", marks=[pytest.mark.kernel, pytest.mark.qemu], id="qemu"),
]


def _vng() -> Path:
    """Where install-deps --qemu puts virtme-ng's vng."""
    cache = Path(
        os.environ.get("HAECS_KERNEL_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "haecs-kernel"
    )
    return cache / "virtme-ng-1.42" / "bin" / "vng"


def _qemu_missing() -> str | None:
    if not _vng().exists():
        return "virtme-ng not installed (tests/kernel/install-deps --qemu)"
    if not shutil.which("qemu-system-x86_64") or not list(Path("/boot").glob("vmlinuz-*")):
        return "qemu or a kernel image missing (tests/kernel/install-deps --qemu)"
    return None


def _skip_if_unavailable(backend: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel runner needs root")
    if backend == "uml" and not shutil.which("linux.uml"):
        pytest.skip("user-mode-linux not installed (tests/kernel/install-deps)")
    if backend == "qemu":
        why = _qemu_missing()
        if why:
            pytest.skip(why)


def run(
    backend: str,
    *cmd: str,
    opts: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    limit: float = 600,
) -> subprocess.CompletedProcess[str]:
    """tests/kernel/run --backend BACKEND [opts] -- cmd, stdin closed as in CI."""
    return subprocess.run(
        [str(RUN), "--backend", backend, *opts, "--", *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=limit,
        check=False,
    )


# What the probe boot runs.  It ends with exit 7 so the same boot proves the
# status pass-through; "sleep 3" after the first marker proves live output.
PROBE = r"""
echo "MARKER-EARLY $PROBE_ID"
sleep 3
echo "ENV=$HAECS_PROBE_VAR"
echo "CWD=$(pwd)"
echo "UID=$(id -u)"
echo "SHARED=$HAECS_KERNEL_SHARED"
echo "GUEST=$HAECS_KERNEL_GUEST"
echo "to-stderr $PROBE_ID" >&2
echo x > /etc/haecs-probe && echo ETC_WRITE_OK
echo x > "$PROBE_CHECKOUT_FILE" && echo CHECKOUT_WRITE_OK
mkdir -p .pytest_cache && echo CACHE_WRITE_OK
touch "$HOME/.haecs-probe" && echo HOME_WRITE_OK
echo "artifact $PROBE_ID" > "$HAECS_KERNEL_SHARED/artifact.txt" && echo SHARED_WRITE_OK
if test -e /proc/net/ip_vs; then echo IPVS_PRELOADED; fi
modprobe ip_vs && test -e /proc/net/ip_vs && echo IPVS_OK
ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -Sn
test "$(ulimit -n)" -ge 65536 && echo ULIMIT_OK
ip -o link show lo | grep -q UP && echo LO_UP
test -d /run/netns && echo NETNS_DIR_OK
echo "MARKER-LATE $PROBE_ID"
exit 7
"""


class Probe:
    def __init__(self, backend: str, tmp: Path) -> None:
        self.id = uuid.uuid4().hex
        self.checkout_file = CHECKOUT / "tests" / "kernel" / f".haecs-probe-{self.id}"
        self.cwd = tmp / "cwd"
        self.cwd.mkdir()
        self.tmpdir = tmp / "tmp"
        self.tmpdir.mkdir()
        self.etc_existed = Path("/etc/haecs-probe").exists()
        env = dict(os.environ)
        env.update(
            HAECS_PROBE_VAR="custom value with 'quotes' and $dollar",
            PROBE_ID=self.id,
            PROBE_CHECKOUT_FILE=str(self.checkout_file),
            TMPDIR=str(self.tmpdir),  # so the work folder is found afterwards
        )
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(RUN), "--backend", backend, "--keep", "--", "bash", "-c", PROBE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        self.marker_at = None
        for line in proc.stdout:
            lines.append(line)
            if self.marker_at is None and line.startswith("MARKER-EARLY"):
                self.marker_at = time.monotonic()
        self.stderr = proc.stderr.read()
        self.rc = proc.wait(timeout=600)
        self.ended_at = time.monotonic()
        self.seconds = self.ended_at - start
        self.stdout = "".join(lines)
        self.works = sorted(self.tmpdir.glob("haecs-kernel.*"))

    def cleanup(self) -> None:
        for w in self.works:
            shutil.rmtree(w, ignore_errors=True)
        self.checkout_file.unlink(missing_ok=True)


@pytest.fixture(scope="module", params=GUEST_BACKENDS)
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    backend = request.param
    _skip_if_unavailable(backend)
    p = Probe(backend, tmp_path_factory.mktemp(f"probe-{backend}"))
    p.backend = backend  # type: ignore[attr-defined]
    print(f"{backend} probe boot: {p.seconds:.1f} s")
    yield p
    p.cleanup()


def _fail_info(p: Probe) -> str:
    return f"rc={p.rc}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def test_exit_status_7_passes_through(probe: Probe) -> None:
    assert probe.rc == 7, _fail_info(probe)
    assert f"MARKER-LATE {probe.id}" in probe.stdout, _fail_info(probe)


def test_stdout_is_streamed_live(probe: Probe) -> None:
    assert f"MARKER-EARLY {probe.id}" in probe.stdout, _fail_info(probe)
    assert probe.marker_at is not None
    # The early marker reached us while the command still slept 3 s.
    assert probe.ended_at - probe.marker_at >= 2.5, _fail_info(probe)


def test_output_is_clean(probe: Probe) -> None:
    """No carriage returns, no kernel messages on stdout."""
    assert "\r" not in probe.stdout
    assert probe.stdout.startswith("MARKER-EARLY"), _fail_info(probe)
    assert "sysrq" not in probe.stdout and "Power down" not in probe.stdout


def test_stderr_reaches_caller(probe: Probe) -> None:
    assert f"to-stderr {probe.id}" in probe.stderr + probe.stdout, _fail_info(probe)


def test_stderr_is_separate(probe: Probe) -> None:
    assert f"to-stderr {probe.id}" in probe.stderr, _fail_info(probe)
    assert f"to-stderr {probe.id}" not in probe.stdout


def test_environment_reaches_command(probe: Probe) -> None:
    assert "ENV=custom value with 'quotes' and $dollar\n" in probe.stdout, _fail_info(probe)
    assert f"GUEST={probe.backend}\n" in probe.stdout  # type: ignore[attr-defined]


def test_cwd_is_preserved_and_root(probe: Probe) -> None:
    assert f"CWD={probe.cwd}\n" in probe.stdout, _fail_info(probe)
    assert "UID=0\n" in probe.stdout
    assert "CACHE_WRITE_OK" in probe.stdout
    assert not (probe.cwd / ".pytest_cache").exists()


def test_etc_write_stays_inside(probe: Probe) -> None:
    assert "ETC_WRITE_OK" in probe.stdout, _fail_info(probe)
    if not probe.etc_existed:
        assert not Path("/etc/haecs-probe").exists()


def test_checkout_write_stays_inside(probe: Probe) -> None:
    assert "CHECKOUT_WRITE_OK" in probe.stdout, _fail_info(probe)
    assert not probe.checkout_file.exists()


def test_home_is_writable(probe: Probe) -> None:
    assert "HOME_WRITE_OK" in probe.stdout, _fail_info(probe)


def test_ipvs_module_loads_on_demand(probe: Probe) -> None:
    assert "IPVS_PRELOADED" not in probe.stdout, "ip_vs must not be preloaded"
    assert "IPVS_OK" in probe.stdout, _fail_info(probe)


def test_ipvsadm_works(probe: Probe) -> None:
    assert "-A -t 10.0.0.1:80 -s rr\n" in probe.stdout, _fail_info(probe)


def test_guest_setup(probe: Probe) -> None:
    for word in ("ULIMIT_OK", "LO_UP", "NETNS_DIR_OK"):
        assert word in probe.stdout, _fail_info(probe)


def test_shared_folder_reaches_host(probe: Probe) -> None:
    assert "SHARED_WRITE_OK" in probe.stdout, _fail_info(probe)
    assert len(probe.works) == 1, probe.works
    shared = probe.works[0]
    assert f"SHARED={shared}\n" in probe.stdout
    assert (shared / "artifact.txt").read_text() == f"artifact {probe.id}\n"
    assert (shared / "status").read_text().strip() == "7"


@pytest.mark.parametrize("backend", GUEST_BACKENDS)
def test_exit_status_0_and_cleanup(backend: str, tmp_path: Path) -> None:
    _skip_if_unavailable(backend)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = run(backend, "true", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"


@pytest.mark.parametrize("backend", [*GUEST_BACKENDS, "host"])
def test_export_copies_results_to_the_host(backend: str, tmp_path: Path) -> None:
    if backend == "host":
        if os.geteuid() != 0:
            pytest.skip("backend host needs root")
    else:
        _skip_if_unavailable(backend)
    target = tmp_path / "results"
    r = run(
        backend,
        "bash",
        "-c",
        'mkdir "$HAECS_KERNEL_EXPORT/sub" && echo kept > "$HAECS_KERNEL_EXPORT/sub/result.txt"; exit 3',
        opts=("--export", str(target)),
        env=dict(os.environ, TMPDIR=str(tmp_path)),
    )
    assert r.returncode == 3, r.stderr
    assert (target / "sub" / "result.txt").read_text() == "kept\n"
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"


@pytest.mark.parametrize("backend", GUEST_BACKENDS)
def test_timeout(backend: str, tmp_path: Path) -> None:
    _skip_if_unavailable(backend)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    start = time.monotonic()
    tag = f"probe-{uuid.uuid4().hex}"
    r = run(backend, "bash", "-c", "sleep 600", tag, opts=("--timeout", "5"), env=env, limit=120)
    took = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert f"tests/kernel/run: timed out after 5 s running: bash -c sleep 600 {tag}" in r.stderr
    assert took < 30
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"
    _assert_nothing_left(tmp_path, tag)


def _assert_nothing_left(tmp_path: Path, tag: str) -> None:
    """No process of that run survives: UML runs as many host processes, vng
    starts qemu (their command lines name the work folder), the runner has a
    watchdog (its command line has the tag)."""
    time.sleep(0.5)
    for pattern in (str(tmp_path), tag):
        left = subprocess.run(
            ["pgrep", "-af", pattern], capture_output=True, text=True, check=False
        )
        assert left.stdout.strip() == "", left.stdout


@pytest.mark.kernel
def test_sigterm_stops_the_kernel(tmp_path: Path) -> None:
    _skip_if_unavailable("uml")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    tag = f"probe-{uuid.uuid4().hex}"
    p = subprocess.Popen(
        [str(RUN), "--backend", "uml", "--", "bash", "-c", "sleep 600", tag],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(3)
    p.terminate()
    assert p.wait(timeout=30) == 143
    time.sleep(0.5)
    _assert_nothing_left(tmp_path, tag)
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"


# ------------------------------------------------------------------ host ---
# The host backend only runs the command (here, without IPVS): cheap checks
# of the shared contract.


def test_host_backend_contract(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    env = dict(os.environ, TMPDIR=str(tmp_path), HAECS_PROBE_VAR="v 1")
    r = run(
        "host",
        "bash",
        "-c",
        'echo "$HAECS_PROBE_VAR|$PWD|$HAECS_KERNEL_GUEST"; test -w "$HAECS_KERNEL_SHARED"; exit 7',
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 7, r.stderr
    assert r.stdout == f"v 1|{tmp_path}|host\n"
    assert not list(tmp_path.glob("haecs-kernel.*"))


def test_host_backend_timeout(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    r = run(
        "host", "sleep", "30", opts=("--timeout", "1"), env=dict(os.environ, TMPDIR=str(tmp_path))
    )
    assert r.returncode == 124
    assert "timed out after 1 s running: sleep 30" in r.stderr


# ------------------------------------------------------------ arguments ---


def test_help() -> None:
    r = subprocess.run([str(RUN), "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    for word in ("--backend", "--mem", "--timeout", "--keep", "--verbose", "stderr"):
        assert word in r.stdout


@pytest.mark.parametrize(
    "args",
    [["--bogus", "true"], ["--backend", "vmware", "true"], ["--timeout", "soon", "true"], []],
)
def test_bad_arguments(args: list[str]) -> None:
    r = subprocess.run([str(RUN), *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr


def test_missing_uml_is_a_clear_error(tmp_path: Path) -> None:
    env = dict(os.environ, HAECS_KERNEL_UML=str(tmp_path / "no-linux.uml"), TMPDIR=str(tmp_path))
    r = run("uml", "true", env=env)
    assert r.returncode == 2
    assert "linux.uml" in r.stderr and "install-deps" in r.stderr
    assert not list(tmp_path.glob("haecs-kernel.*"))


# ------------------------------------------------------ a fresh machine ---
# The guest must not depend on host directories that only some machines have.
# These tests run the runner in a private mount namespace of the host in
# which a path is hidden: a read-only overlay whose top layer holds an
# overlayfs whiteout (a 0:0 character device) for the hidden name.  Nothing
# changes outside that namespace.

HIDE_AND_RUN = r"""
set -eu
scratch=$1; shift
i=0
for path in $HAECS_HIDE; do
    [ -e "$path" ] || continue
    i=$((i + 1))
    layer=$scratch/hide$i
    mkdir -p "$layer"
    mknod "$layer/$(basename "$path")" c 0 0
    mount -t overlay -o "lowerdir=$layer:$(dirname "$path")" "haecs-hide$i" "$(dirname "$path")"
done
for path in $HAECS_HIDE; do
    if [ -e "$path" ]; then echo "still visible: $path" >&2; exit 99; fi
done
exec "$@"
"""


def run_hiding(
    hide: list[str], tmp_path: Path, *cmd: str, limit: float = 300
) -> subprocess.CompletedProcess[str]:
    """tests/kernel/run --backend uml -- cmd, with the paths in `hide` absent."""
    scratch = tmp_path / "layers"
    scratch.mkdir()
    hide_then_run = ["unshare", "--mount", "--propagation", "private", "bash", "-c", HIDE_AND_RUN]
    return subprocess.run(
        [*hide_then_run, "hide", str(scratch), str(RUN), "--backend", "uml", "--", *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(os.environ, TMPDIR=str(tmp_path), HAECS_HIDE=" ".join(hide)),
        timeout=limit,
        check=False,
    )


def _uml_modules() -> Path:
    out = subprocess.run(
        ["linux.uml", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path("/usr/lib/uml/modules") / out


@pytest.mark.kernel
def test_boots_where_lib_modules_does_not_exist(tmp_path: Path) -> None:
    """A machine without a distribution kernel has no /lib/modules."""
    _skip_if_unavailable("uml")
    script = (
        "modprobe ip_vs && ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -Sn"
        " && ls /lib/modules && touch /lib/modules/x && echo WROTE"
    )
    r = run_hiding(["/usr/lib/modules"], tmp_path, "bash", "-c", script)
    assert r.returncode == 0, r.stderr
    assert "-A -t 10.0.0.1:80 -s rr\n" in r.stdout
    assert f"{_uml_modules().name}\n" in r.stdout and "WROTE" in r.stdout
    assert not Path("/lib/modules/x").exists()


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("hidden", "named"),
    [
        ("kernel/fs/overlayfs/overlay.ko", "overlay.ko is missing"),
        ("kernel/net/netfilter/ipvs", "ip_vs.ko is missing"),
        ("modules.dep", "modules.dep is missing"),
        ("", "no module tree for the UML kernel"),
    ],
)
def test_a_missing_module_piece_is_named(hidden: str, named: str, tmp_path: Path) -> None:
    _skip_if_unavailable("uml")
    path = _uml_modules() / hidden if hidden else _uml_modules()
    if hidden.endswith(".ko"):
        path = next(path.parent.glob(path.name + "*"))  # overlay.ko or overlay.ko.xz
    r = run_hiding([str(path)], tmp_path, "true")
    assert r.returncode == 2, r.stderr
    assert named in r.stderr and "user-mode-linux" in r.stderr, r.stderr
    assert "ended without" not in r.stderr
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"


@pytest.mark.kernel
def test_a_missing_guest_tool_is_named(tmp_path: Path) -> None:
    _skip_if_unavailable("uml")
    tool = shutil.which("pivot_root")
    assert tool, "util-linux's pivot_root is part of every Debian system"
    r = run_hiding([str(Path(tool).resolve())], tmp_path, "true")
    assert r.returncode == 2, r.stderr
    assert "needs these host tools: pivot_root" in r.stderr, r.stderr
    assert "util-linux" in r.stderr


# ------------------------------------------- a boot that never ran CMD ---
# A guest kernel can die before its init reaches CMD (a panic during boot,
# QEMU or UML killed): nothing of CMD ran, so the runner boots once more.
# A stand-in for linux.uml plays the boots in FAKE_PLAN, one word a boot:
#   crash    print a last message and stop before the init's marker
#   midway   write the init's marker (CMD began), then stop
#   error    leave a guest-error, as the init does when its set-up fails
#   ok       write the marker, print on the guest's stdout, leave status 5
# It answers --version like the real one, so the preflight passes.
FAKE_UML = r"""#!/bin/bash
if [ "${1:-}" = --version ]; then exec linux.uml --version; fi
for a in "$@"; do case $a in init=*) work=$(dirname "${a#init=}") ;; esac; done
n=$(( $(cat "$FAKE_COUNT" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_COUNT"
read -r -a plan <<< "$FAKE_PLAN"
case ${plan[$((n - 1))]:-crash} in
    crash) echo "Kernel panic - not syncing: fake boot $n" >&2; exit 1 ;;
    midway) : > "$work/cmd-started"; echo "fake boot $n stopped midway" >&2; exit 1 ;;
    error) echo "overlay on /etc" > "$work/guest-error"; exit 0 ;;
    ok) : > "$work/cmd-started"; echo "CMD ran in boot $n" >&3; echo 5 > "$work/status" ;;
esac
"""


def _stand_in(tmp_path: Path, script: str, var: str, **env: str) -> tuple[dict[str, str], Path]:
    """A stand-in executable named by the runner's variable `var`: the
    runner's environment, and the file where the stand-in counts its boots."""
    fake = tmp_path / "stand-in"
    fake.write_text(script)
    fake.chmod(0o755)
    count = tmp_path / "boots"
    env.update({var: str(fake), "FAKE_COUNT": str(count), "TMPDIR": str(tmp_path)})
    return dict(os.environ, **env), count


def run_fake_uml(plan: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """tests/kernel/run --backend uml -- true with the stand-in kernel; the
    result and how many times it was booted."""
    _skip_if_unavailable("uml")
    env, count = _stand_in(tmp_path, FAKE_UML, "HAECS_KERNEL_UML", FAKE_PLAN=plan)
    # The stand-in's "guest stdout" is fd 3, which the runner gives UML for
    # the guest's stderr line: enough to see which boot's output got through.
    r = run("uml", "true", env=env, limit=60)
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"
    return r, int(count.read_text())


@pytest.mark.kernel
def test_a_boot_that_stops_before_cmd_is_booted_once_more(tmp_path: Path) -> None:
    r, boots = run_fake_uml("crash ok", tmp_path)
    assert boots == 2
    assert r.returncode == 5, r.stderr
    assert "stopped after" in r.stderr and "before CMD started (kernel exit 1)" in r.stderr
    assert "booting it once more" in r.stderr
    assert "  | Kernel panic - not syncing: fake boot 1" in r.stderr, r.stderr
    assert "CMD ran in boot 2" in r.stderr


@pytest.mark.kernel
def test_two_boots_that_stop_before_cmd_fail_with_their_last_messages(tmp_path: Path) -> None:
    r, boots = run_fake_uml("crash crash ok", tmp_path)
    assert boots == 2
    assert r.returncode == 125
    assert "stopped twice before CMD started (kernel exit 1" in r.stderr, r.stderr
    assert "  | Kernel panic - not syncing: fake boot 2" in r.stderr, r.stderr


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("plan", "said"),
    [
        ("midway ok", "while CMD ran, without its exit status (kernel exit 1)"),
        ("error ok", "the uml guest could not run CMD: overlay on /etc"),
    ],
)
def test_a_boot_that_ran_cmd_or_failed_its_setup_is_not_repeated(
    plan: str, said: str, tmp_path: Path
) -> None:
    r, boots = run_fake_uml(plan, tmp_path)
    assert boots == 1
    assert r.returncode == 125
    assert said in r.stderr, r.stderr
    assert "once more" not in r.stderr


FAKE_VNG = r"""#!/bin/bash
n=$(( $(cat "$FAKE_COUNT" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_COUNT"
if [ "$n" = 1 ]; then
    for a in "$@"; do
        case $a in "--qemu-opts=-serial file:"*) console=${a#--qemu-opts=-serial file:} ;; esac
    done
    echo "Kernel panic - not syncing: stand-in boot" > "$console"
    exit 255
fi
PATH=$(dirname "$REAL_VNG"):$PATH exec "$REAL_VNG" "$@"
"""


@pytest.mark.kernel
@pytest.mark.qemu
def test_qemu_boot_that_stops_before_cmd_shows_its_console_and_boots_again(
    tmp_path: Path,
) -> None:
    """The first boot stands in for a guest that panicked (vng exits 255 and
    the kernel's copy of its console has the panic); the second is real."""
    _skip_if_unavailable("qemu")
    env, count = _stand_in(tmp_path, FAKE_VNG, "HAECS_KERNEL_VNG", REAL_VNG=str(_vng()))
    r = run("qemu", "bash", "-c", "echo ran; exit 4", env=env)
    assert r.returncode == 4, r.stderr
    assert r.stdout == "ran\n"
    assert count.read_text() == "2\n"
    assert "before CMD started (kernel exit 255); booting it once more" in r.stderr, r.stderr
    assert "  | Kernel panic - not syncing: stand-in boot" in r.stderr
    assert not list(tmp_path.glob("haecs-kernel.*")), "work folder left behind"
