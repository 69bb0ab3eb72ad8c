"""memtrim: the C heap's free pages go back to the system; nothing where it cannot."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest
from haecs_monitor.runtime import memtrim


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def fresh() -> Iterator[None]:
    memtrim._malloc_trim.cache_clear()
    yield
    memtrim._malloc_trim.cache_clear()


@pytest.mark.usefixtures("fresh")
def test_holes_left_by_freed_blocks_leave_the_rss() -> None:
    if memtrim._malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim")
    # 2 KB blocks come from malloc, not Python's small-object allocator;
    # keeping one in ten pins the heap's top, so only a trim frees the rest.
    blocks = [bytes(2048 - 33) + bytes([index % 256]) for index in range(20000)]
    kept = blocks[::10]
    del blocks
    before = rss_kb()
    assert memtrim.release_free_memory()
    assert before - rss_kb() > 10_000, "less than 10 MB of the 36 MB freed left the RSS"
    assert len(kept) == 2000


@pytest.mark.usefixtures("fresh")
def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_library(name: object) -> object:
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert memtrim.release_free_memory() is False
    assert memtrim.release_free_memory() is False  # looked once, remembered
