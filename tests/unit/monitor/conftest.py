"""Shared by the monitor's unit tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def collector_unfrozen() -> Iterator[None]:
    """A started monitor freezes what it holds in the cyclic collector's
    permanent generation (runtime/gcfreeze.py); in pytest's process that would
    keep each test's garbage cycles for the rest of the session."""
    yield
    gc.unfreeze()
