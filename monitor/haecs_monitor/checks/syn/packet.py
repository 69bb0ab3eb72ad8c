"""TCP SYN probes as bytes: build one, parse a reply, checksum (pure).

An IPv4 raw socket (no IP_HDRINCL) sends the TCP segment we give it and
receives whole IP packets; an IPv6 raw socket sends and receives TCP
segments only (the source address comes with recvfrom) and fills in the
checksum itself with IPV6_CHECKSUM.  So IPv4 needs `syn_to` (checksum over
the pseudo-header, with the source address the kernel will use) and IPv6
needs `syn_segment` with a zero checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
IPPROTO_TCP = 6
WINDOW = 64240
MSS = 1460
HEADER_LENGTH = 24  # 20 bytes + the MSS option
CHECKSUM_OFFSET = 16  # of the checksum field in the TCP header (IPV6_CHECKSUM)
SEQ_MASK = 0xFFFFFFFF

_HEADER = struct.Struct("!HHIIBBHHHBBH")  # ports, seq, ack, offset, flags, window, sum, urg, MSS
_REPLY = struct.Struct("!HHIIBB")  # ports, seq, ack, offset, flags
_ADDRESS_WORDS = struct.Struct("!HH")  # an IPv4 address as two 16-bit words


def ones_sum(data: bytes) -> int:
    """The 16-bit ones'-complement sum of DATA (padded to even length), folded."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack("!%dH" % (len(data) // 2), data)
    return fold(sum(words))


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_header(source: bytes, destination: bytes, length: int) -> bytes:
    """The IPv4 (4-byte addresses) or IPv6 (16-byte) pseudo-header of TCP."""
    if len(source) == 4:
        return source + destination + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    return source + destination + struct.pack("!IxxxB", length, IPPROTO_TCP)


def tcp_checksum(source: bytes, destination: bytes, segment: bytes) -> int:
    """The TCP checksum of SEGMENT (its checksum field zero) between the two addresses."""
    return ~ones_sum(pseudo_header(source, destination, len(segment)) + segment) & 0xFFFF


def syn_segment(source_port: int, port: int, seq: int, checksum: int = 0) -> bytes:
    """A SYN with an MSS option, 24 bytes."""
    return _HEADER.pack(
        source_port, port, seq, 0, (HEADER_LENGTH // 4) << 4, SYN, WINDOW, checksum, 0, 2, 4, MSS
    )


def source_share(source: bytes) -> int:
    """The share of a SYN's checksum that is the same for every SYN from
    SOURCE (`syn_to` adds the rest): the source address, the protocol and
    length of the pseudo-header and the SYN's constant fields.

    Everything but the destination, its port, the source port and the
    sequence number is the same for every probe: its share of the checksum
    is summed once, and each SYN adds six 16-bit words (RFC 1624's
    incremental update, here from a zero base).  One int per source address,
    shared by the targets it reaches: an int per target was 32 B each."""
    return ones_sum(pseudo_header(source, bytes(len(source)), HEADER_LENGTH) + syn_segment(0, 0, 0))


def syn_to(share: int, destination: bytes, source_port: int, port: int, seq: int) -> bytes:
    """The SYN to DESTINATION (4 packed bytes):PORT from the source whose
    share is SHARE (`source_share`)."""
    high, low = _ADDRESS_WORDS.unpack(destination)
    total = fold(share + high + low + port + source_port + (seq >> 16) + (seq & 0xFFFF))
    return syn_segment(source_port, port, seq, ~total & 0xFFFF)


@dataclass(frozen=True)
class Reply:
    """A TCP segment that may answer one of our probes."""

    peer: bytes  # the sender's address, packed (4 or 16 bytes)
    peer_port: int
    our_port: int
    ack: int
    flags: int

    @property
    def key(self) -> tuple[bytes, int, int]:
        return (self.peer, self.peer_port, self.our_port)


def parse_ipv4(packet: bytes) -> Optional[Reply]:
    """A reply from a whole IPv4 packet (what an IPv4 raw socket reads), or
    None when it is not a first fragment of TCP long enough to parse."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_TCP:
        return None
    if (packet[6] & 0x1F) or packet[7]:  # a later fragment: no TCP header in it
        return None
    start = (packet[0] & 0x0F) * 4
    if start < 20 or len(packet) < start + 14:
        return None
    peer_port, our_port, _seq, ack, _offset, flags = _REPLY.unpack_from(packet, start)
    return Reply(packet[12:16], peer_port, our_port, ack, flags)


def parse_segment(peer: bytes, segment: bytes) -> Optional[Reply]:
    """A reply from a bare TCP segment (what an IPv6 raw socket reads) from PEER."""
    if len(segment) < 14:
        return None
    peer_port, our_port, _seq, ack, _offset, flags = _REPLY.unpack_from(segment)
    return Reply(peer, peer_port, our_port, ack, flags)


def verdict(flags: int) -> Optional[bool]:
    """What a reply to our SYN says: True for SYN-ACK (a listening socket),
    False for RST-ACK (refused), None for anything else (not an answer)."""
    if not flags & ACK:
        return None
    if flags & RST:
        return False
    if flags & SYN:
        return True
    return None
