"""The source address the kernel would use towards a destination.

IPv4 SYNs carry a checksum over a pseudo-header that includes our source
address, which the kernel only picks when it sends the packet.  A connected
UDP socket makes it pick one without sending anything: getsockname() tells
which.  The prober keeps the answer per destination address, learns every
one again after SOURCE_MAX_AGE seconds and forgets one at once when a probe
to it times out, so a route or address change costs at most one timed-out
probe.
"""

from __future__ import annotations

import socket

SOURCE_MAX_AGE = 60.0


def source_address(family: int, destination: str) -> bytes:
    """Our packed source address towards DESTINATION; OSError when there is
    no route (ENETUNREACH) or no descriptor left (EMFILE)."""
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.connect((destination, 9))  # a UDP connect sends nothing
        return socket.inet_pton(family, udp.getsockname()[0])
