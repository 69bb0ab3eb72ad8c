"""Probes waiting for their answer, and which segment answers which (pure).

A probe is known by (target address, target port, our port); the segment
that answers it comes from that address and port to our port and
acknowledges our sequence number plus one.  Anything else (an old answer,
a stray segment, a guess at our ports without our sequence number) is
ignored.  A matched probe leaves the table: a duplicate answer (a
retransmitted SYN-ACK) matches nothing.
"""

from __future__ import annotations

from typing import Callable, Optional

from haecs_monitor.checks.syn.packet import SEQ_MASK, Reply, verdict

Key = tuple[bytes, int, int]  # peer address (packed), peer port, our port
# called with the answer (True: SYN-ACK, False: RST) and the loop time it was read
Resolve = Callable[[bool, float], None]


class Pending:
    def __init__(self) -> None:
        self._probes: dict[Key, tuple[int, Resolve]] = {}

    def __len__(self) -> int:
        return len(self._probes)

    def busy(self, key: Key) -> bool:
        return key in self._probes

    def add(self, key: Key, seq: int, resolve: Resolve) -> None:
        """Wait for the answer to a SYN with sequence number SEQ."""
        self._probes[key] = ((seq + 1) & SEQ_MASK, resolve)

    def remove(self, key: Key, resolve: Resolve) -> None:
        """Stop waiting (timed out, cancelled); a newer probe on KEY stays."""
        entry = self._probes.get(key)
        if entry is not None and entry[1] is resolve:
            del self._probes[key]

    def match(self, reply: Reply) -> Optional[tuple[Resolve, bool]]:
        """The probe REPLY answers (taken off the table) and the answer, or None."""
        entry = self._probes.get(reply.key)
        if entry is None or entry[0] != reply.ack:
            return None
        answer = verdict(reply.flags)
        if answer is None:
            return None
        del self._probes[reply.key]
        return entry[1], answer

    def clear(self) -> None:
        self._probes.clear()
