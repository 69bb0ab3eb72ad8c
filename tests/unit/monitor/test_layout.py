"""The monitor laid out exactly as a director gets it (docs/design/monitor-deploy.md):
complete, free of Ansible, and runnable by the distribution's Python.

/usr/lib/haecs/bin/{haecs-monitor,haecsctl}, /usr/lib/haecs/haecs_monitor/ and
/usr/lib/haecs/ansible_collections/haecs/lvs/plugins/module_utils/ipvs/ (the
engine package, nothing else of the collection), run with /usr/bin/python3 -I
(no user site, no PYTHONPATH): a missing file, an Ansible import or a
dependency beyond python3-yaml and python3-dnspython fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
SYSTEM_PYTHON = "/usr/bin/python3"
ENGINE = Path("ansible_collections/haecs/lvs/plugins/module_utils/ipvs")


IMPORT_ALL = r"""
import importlib, pkgutil, sys
lib = sys.argv[1]
sys.path.insert(0, lib)
from haecs_monitor import paths
paths.setup(lib)
import haecs_monitor
names = [info.name for info in pkgutil.walk_packages(haecs_monitor.__path__, "haecs_monitor.")]
for name in names:
    importlib.import_module(name)
if any(name == "ansible" or name.startswith("ansible.") for name in sys.modules):
    sys.exit("Ansible was imported")
print(len(names))
"""


def lay_out(root: Path) -> Path:
    """The deployed tree under `root` (as if it were /), from the bundle the
    monitor role unpacks on a director; returns `root`/usr/lib/haecs."""
    archive = root / "monitor-bundle.tar"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "roles/monitor/files/bundle.py"),
            str(REPO),
            str(archive),
            SYSTEM_PYTHON,
            "/usr/lib/haecs",
        ],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(root)
    assert os.readlink(root / "usr/sbin/haecsctl") == "/usr/lib/haecs/bin/haecsctl"
    assert (root / "var/lib/haecs").stat().st_mode & 0o777 == 0o700
    return root / "usr" / "lib" / "haecs"


def write_config(tmp_path: Path) -> Path:
    """A configuration that needs every part: the engine's validation, dns, http."""
    config = tmp_path / "monitor.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"name": "layout", "control_socket": str(tmp_path / "m.sock")},
                "services": [
                    {
                        "protocol": "udp",
                        "address": "10.0.0.53",
                        "port": 53,
                        "checks": [{"type": "dns", "query": "example.org"}],
                        "real_servers": [{"address": "10.1.1.2", "forwarding": "route"}],
                    },
                    {
                        "protocol": "tcp",
                        "address": "10.0.0.1",
                        "port": 80,
                        "checks": [{"type": "http", "path": "/"}],
                        "real_servers": [{"address": "10.1.1.2", "port": 80, "forwarding": "masq"}],
                    },
                ],
            }
        )
    )
    return config


def test_the_deployed_layout_checks_a_config_with_the_system_python(tmp_path: Path) -> None:
    lib = lay_out(tmp_path)
    config = write_config(tmp_path)
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(lib / "bin" / "haecs-monitor"), "--check", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config OK: 2 services" in done.stdout
    # Every module the running monitor may import, not only what --check needs.
    imported = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", IMPORT_ALL, str(lib)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) >= 30
    usage = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(lib / "bin" / "haecsctl"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert usage.returncode == 0 and "haecsctl" in usage.stdout, usage.stderr
    # Run as commands, whatever PATH says: their first line names the system Python.
    assert (lib / "bin" / "haecs-monitor").read_text().startswith("#!%s -I\n" % SYSTEM_PYTHON)
    direct = subprocess.run(
        [str(lib / "bin" / "haecs-monitor"), "--check", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/nonexistent"},
    )
    assert direct.returncode == 0 and "config OK" in direct.stdout, direct.stderr


def test_a_missing_engine_file_is_caught(tmp_path: Path) -> None:
    """The check above can fail: the same layout without one engine module."""
    lib = lay_out(tmp_path)
    (lib / ENGINE / "plan.py").unlink()
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", IMPORT_ALL, str(lib)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "ImportError" in done.stderr and "plan" in done.stderr
