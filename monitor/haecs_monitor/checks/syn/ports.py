"""Source ports for SYN probes, reserved so no connection of the kernel uses them.

Each port is held by a TCP socket bound to the wildcard address and never
connected or listening: the kernel skips a bound port when it picks an
ephemeral port for connect(), and another bind() to it fails (no
SO_REUSEADDR on ours).  A bound-only socket is not in the lookup tables a
received segment is matched against, so a SYN-ACK to such a port finds no
socket and the kernel answers it with RST: the probed server drops its
half-open connection at once.
"""

from __future__ import annotations

import socket

POOL_SIZE = 16


class PortPool:
    """POOL_SIZE reserved ports of one address family, handed out in turn."""

    def __init__(self, family: int, size: int = POOL_SIZE) -> None:
        self._holders: list[socket.socket] = []
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        try:
            for _unused in range(size):
                holder = socket.socket(family, socket.SOCK_STREAM)
                self._holders.append(holder)
                if family == socket.AF_INET6:
                    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                holder.bind((wildcard, 0))
        except OSError:
            self.close()
            raise
        self.ports: tuple[int, ...] = tuple(
            int(holder.getsockname()[1]) for holder in self._holders
        )
        self._next = 0

    def take(self) -> int:
        """The next port, round robin (so one target sees a new source port
        on each probe, never the four-tuple of the probe before)."""
        port = self.ports[self._next]
        self._next = (self._next + 1) % len(self.ports)
        return port

    def close(self) -> None:
        for holder in self._holders:
            holder.close()
        self._holders.clear()
