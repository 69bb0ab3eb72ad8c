"""Probes waiting for their answer, and which segment answers which (pure).

A probe is known by (target address, target port, our port); the segment
that answers it comes from that address and port to our port and
acknowledges our sequence number plus one.  Anything else (an old answer,
a stray segment, a guess at our ports without our sequence number) is
ignored.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from haecs_monitor.checks.syn.packet import SEQ_MASK, Reply, verdict

Key = tuple[bytes, int, int]  # peer address (packed), peer port, our port
Answer = Optional[bool]  # True: SYN-ACK, False: RST, None: timed out


class Pending:
    def __init__(self) -> None:
        self._probes: dict[Key, tuple[int, asyncio.Future[Answer]]] = {}

    def __len__(self) -> int:
        return len(self._probes)

    def busy(self, key: Key) -> bool:
        return key in self._probes

    def add(self, key: Key, seq: int, future: asyncio.Future[Answer]) -> None:
        """Wait for the answer to a SYN with sequence number SEQ."""
        self._probes[key] = ((seq + 1) & SEQ_MASK, future)

    def remove(self, key: Key, future: asyncio.Future[Answer]) -> None:
        entry = self._probes.get(key)
        if entry is not None and entry[1] is future:
            del self._probes[key]

    def answer(self, reply: Reply) -> bool:
        """Resolve the probe REPLY answers; False when it answers none."""
        entry = self._probes.get(reply.key)
        if entry is None or entry[0] != reply.ack:
            return False
        result = verdict(reply.flags)
        if result is None or entry[1].done():
            return False
        entry[1].set_result(result)
        return True

    def cancel_all(self) -> None:
        for _ack, future in self._probes.values():
            if not future.done():
                future.cancel()
        self._probes.clear()
