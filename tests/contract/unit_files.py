"""`systemd-analyze verify` for the systemd units the collection installs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (make deps installs systemd for it)",
)


def verify(path: str) -> None:
    """Fail the test unless systemd-analyze accepts the unit at PATH without a word about it."""
    result = subprocess.run(
        ["systemd-analyze", "verify", path], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    name = path.rsplit("/", 1)[-1]
    assert name not in result.stderr, result.stderr
