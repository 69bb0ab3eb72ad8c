"""The IPVS engine and the firewall-mark layers are packages with no Ansible
import: the monitor ships the engine to directors that have no Ansible."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]

PROBE = r"""
import importlib, importlib.abc, pkgutil, sys

class NoAnsible(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ansible" or name.startswith("ansible."):
            raise ImportError("Ansible is absent here: %s" % name)
        return None

sys.meta_path.insert(0, NoAnsible())
sys.path.insert(0, sys.argv[1])
package = importlib.import_module("ansible_collections.haecs.lvs.plugins.module_utils." + sys.argv[2])
names = [info.name for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(" ".join(sorted(name.rsplit(".", 1)[1] for name in names)))
"""


def _probe(tmp_path: Path, package: str) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "ansible_collections" / "haecs"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "lvs").exists():
        os.symlink(REPO, root / "lvs")
    return subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(tmp_path), package],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_engine_imports_with_ansible_absent(tmp_path: Path) -> None:
    done = _probe(tmp_path, "ipvs")
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert {
        "engine",
        "model",
        "genl",
        "codec",
        "plan",
        "params",
        "kmod",
        "config",
        "rules",
    } <= modules


def test_the_firewall_mark_layers_import_with_ansible_absent(tmp_path: Path) -> None:
    done = _probe(tmp_path, "nft")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"model", "params", "read", "plan", "apply", "boot"}


def test_the_blocker_would_catch_an_ansible_import(tmp_path: Path) -> None:
    """The probe above can fail: a module that imports Ansible is refused."""
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            PROBE.replace("package = ", "import ansible.module_utils.basic\npackage = "),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "Ansible is absent here: ansible" in done.stderr
