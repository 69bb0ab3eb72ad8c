"""`@dataclass(..., **SLOTS)`: slotted dataclasses where Python has them.

The monitor keeps several of these objects per real server, and without a
`__dict__` each is smaller.  `dataclass(slots=True)` needs Python 3.10; on
3.9 (RHEL 9, Debian 11) the same classes keep a `__dict__` and behave the same.
"""

from __future__ import annotations

import sys
from typing import Any

SLOTS: dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}
