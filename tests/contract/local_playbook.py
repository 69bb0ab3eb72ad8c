"""Run ansible-playbook on this host for a test: the collection from
build/collections, Ansible's state in the test's own folder, an inventory
written from a dict, and a fixed hash seed (a seed under which a set of
strings comes out of inventory order shows where a play lost that order).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any, List, Mapping

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"


def run_playbook(
    folder: pathlib.Path,
    inventory: Mapping[str, Any],
    playbook: pathlib.Path,
    arguments: List[str],
    hash_seed: int = 1,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook -i FOLDER/inventory.yml ARGUMENTS PLAYBOOK, run in FOLDER."""
    if not (COLLECTIONS / "ansible_collections" / "haecs" / "lvs").exists():
        pytest.fail("the collection link is missing: make collection")
    (folder / "inventory.yml").write_text(yaml.safe_dump(dict(inventory)))
    environment = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCAL_TEMP=str(folder / "tmp"),
        ANSIBLE_HOME=str(folder / "home"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="default",
        PYTHONHASHSEED=str(hash_seed),
    )
    command = pathlib.Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(command), "-i", "inventory.yml", *arguments, str(playbook)],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
