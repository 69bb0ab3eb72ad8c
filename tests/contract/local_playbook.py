"""Run ansible-playbook on this host for a test: the collection from
build/collections, Ansible's state in the test's own folder, an inventory
written from a dict, and a fixed hash seed (a seed under which a set of
strings comes out of inventory order shows where a play lost that order).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any, List, Mapping, Optional

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


def validation_messages(
    folder: pathlib.Path,
    inventory: Mapping[str, Any],
    role: str,
    cases: List[Mapping[str, Any]],
    host: str,
    keep: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    """Run ROLE's validate entry point on HOST once for each case's variables.

    Returns {"found": [...]}: for each case, in order, "" when its checks
    passed, else the failed task's message; plus each of KEEP's names with
    the value of its Jinja expression at the end of the run.
    """
    tasks: list[dict[str, Any]] = []
    for index, settings in enumerate(cases):
        tasks.append(
            {
                "name": "case %d" % index,
                "block": [
                    {
                        "name": "the checks of case %d" % index,
                        "ansible.builtin.include_role": {"name": role, "tasks_from": "validate"},
                        "vars": dict(settings),
                    },
                    {"ansible.builtin.set_fact": {"found": "{{ found + [''] }}"}},
                ],
                "rescue": [
                    {
                        "ansible.builtin.set_fact": {
                            "found": "{{ found + [ansible_failed_result.msg] }}"
                        }
                    },
                ],
            }
        )
    kept = ", ".join("%r: %s" % (name, expression) for name, expression in (keep or {}).items())
    tasks.append(
        {
            "name": "the messages",
            "ansible.builtin.copy": {
                "content": "{{ {'found': found%s} | to_json }}" % (", " + kept if kept else ""),
                "dest": str(folder / "found.json"),
                "mode": "0600",
            },
        }
    )
    play = [{"hosts": host, "gather_facts": False, "vars": {"found": []}, "tasks": tasks}]
    (folder / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    ran = run_playbook(folder, inventory, folder / "play.yml", [])
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert (folder / "found.json").exists(), ran.stdout[-3000:]
    result: dict[str, Any] = json.loads((folder / "found.json").read_text())
    assert len(result["found"]) == len(cases)
    return result
