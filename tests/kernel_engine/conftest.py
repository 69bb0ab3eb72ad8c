"""Fixtures for engine tests that run inside a kernel with IPVS.

Run them with:  tests/kernel/run -- .venv/bin/pytest tests/kernel_engine
"""

from __future__ import annotations

import os
import subprocess
from typing import Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if not os.environ.get("HAECS_KERNEL_GUEST") and os.geteuid() != 0:
        skip = pytest.mark.skip(
            reason="needs root in a kernel with IPVS: run through tests/kernel/run"
        )
        for item in items:
            item.add_marker(skip)


def ipvsadm(*args: str) -> str:
    return subprocess.run(["ipvsadm", *args], check=True, capture_output=True, text=True).stdout


def saved_table() -> List[str]:
    """The kernel table as `ipvsadm -Sn` prints it: the independent witness."""
    return ipvsadm("-Sn").splitlines()


@pytest.fixture
def clean_table() -> Iterator[None]:
    if os.path.exists("/proc/net/ip_vs"):
        ipvsadm("-C")
    yield
    if os.path.exists("/proc/net/ip_vs"):
        ipvsadm("-C")


@pytest.fixture
def ipvs(clean_table: None):  # type: ignore[no-untyped-def]
    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS

    with IPVS() as connection:
        yield connection
