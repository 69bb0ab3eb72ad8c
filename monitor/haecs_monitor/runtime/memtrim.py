"""Give the C allocator's free memory back to the system after a start or reload.

A start builds the monitor's state once (the unpickled model, the kernel's
table read to adopt it, the first desired table, the tables of tens of
thousands of checks), and so does a reload.  The large blocks that building
frees (old hash tables of grown dicts, the pickled model, netlink replies)
stay inside glibc's heap as holes, where only the top of the heap is given
back on its own: at 30,000 real servers about 6 MB, a fifth of a KB per real
server, stayed in the daemon's RSS for good (measured in the test kernel).
glibc's `malloc_trim(0)` returns every free page, the holes' too.  Where the
C library has no `malloc_trim` (musl), nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Callable, Optional


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """The C library's malloc_trim, looked up once; None when it has none."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; whether any went.
    ctypes drops the GIL for the call: other threads run meanwhile."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
