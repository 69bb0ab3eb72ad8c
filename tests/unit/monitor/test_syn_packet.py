"""SYN probing's pure parts: checksum, packets, the socket filter, matching."""

from __future__ import annotations

import socket
import struct

import pytest
from haecs_monitor.checks.syn import bpf, packet
from haecs_monitor.checks.syn.pending import Pending

SRC4 = socket.inet_pton(socket.AF_INET, "192.0.2.10")
DST4 = socket.inet_pton(socket.AF_INET, "198.51.100.7")
SRC6 = socket.inet_pton(socket.AF_INET6, "2001:db8::10")
DST6 = socket.inet_pton(socket.AF_INET6, "2001:db8:1::7")


def test_ones_sum_rfc1071_example() -> None:
    # RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (folded)
    assert packet.ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert packet.ones_sum(b"\xff") == 0xFF00  # odd length: padded with a zero byte


def test_checksum_of_a_known_segment() -> None:
    # 10.0.0.1:40000 -> 10.0.0.2:80, seq 1, MSS 1460, summed by hand word by word:
    # pseudo-header 0a00 0001 0a00 0002 0006 0018, then 9c40 0050 0000 0001
    # 0000 0000 6002 faf0 0000 0000 0204 05b4 -> sum 0x2135c, folded 0x135e,
    # complement 0xeca1
    source = socket.inet_pton(socket.AF_INET, "10.0.0.1")
    destination = socket.inet_pton(socket.AF_INET, "10.0.0.2")
    segment = packet.syn_segment(40000, 80, 1)
    assert packet.tcp_checksum(source, destination, segment) == 0xECA1
    # the receiver's check: the sum over pseudo-header and checksummed segment is all ones
    sealed = packet.syn_segment(40000, 80, 1, 0xECA1)
    assert packet.ones_sum(packet.pseudo_header(source, destination, 24) + sealed) == 0xFFFF


@pytest.mark.parametrize("seq", [0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 0x12345678])
@pytest.mark.parametrize("source_port", [1, 1024, 40000, 65535])
@pytest.mark.parametrize("port", [1, 80, 8080, 65535])
def test_the_source_share_gives_the_full_checksum(seq: int, source_port: int, port: int) -> None:
    share = packet.source_share(SRC4)
    for destination in (DST4, b"\xff\xff\xff\xff", b"\x00\x00\x00\x01", b"\x0a\x40\x75\x30"):
        built = packet.syn_to(share, destination, source_port, port, seq)
        plain = packet.syn_segment(source_port, port, seq)
        assert built[:16] == plain[:16] and built[18:] == plain[18:]
        (checksum,) = struct.unpack_from("!H", built, 16)
        assert checksum == packet.tcp_checksum(SRC4, destination, plain)
        sealed = packet.pseudo_header(SRC4, destination, len(built)) + built
        assert packet.ones_sum(sealed) == 0xFFFF


def test_a_checksum_of_zero() -> None:
    """The sum folds to all ones: the checksum is 0 (valid in TCP), as the
    full computation gives it."""
    share = packet.source_share(SRC4)
    high, low = struct.unpack("!HH", DST4)
    rest = packet.fold(share + high + low + 8080 + 40000)
    seq = 0xFFFF - rest  # the last word brings the sum to 0xFFFF
    built = packet.syn_to(share, DST4, 40000, 8080, seq)
    assert struct.unpack_from("!H", built, 16) == (0,)
    assert packet.tcp_checksum(SRC4, DST4, packet.syn_segment(40000, 8080, seq)) == 0


def test_ipv6_pseudo_header_layout() -> None:
    header = packet.pseudo_header(SRC6, DST6, 24)
    assert len(header) == 40
    assert header[32:] == bytes([0, 0, 0, 24, 0, 0, 0, 6])


def test_syn_segment_fields() -> None:
    segment = packet.syn_segment(40001, 443, 0xDEADBEEF)
    assert len(segment) == packet.HEADER_LENGTH == 24
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", segment)
    assert (sport, dport, seq, ack) == (40001, 443, 0xDEADBEEF, 0)
    assert offset >> 4 == 6 and flags == packet.SYN and window == packet.WINDOW
    assert segment[20:] == bytes([2, 4, 0x05, 0xB4])  # MSS 1460


def ipv4(source: bytes, destination: bytes, segment: bytes, ihl: int = 5, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(segment), 1, frag, 64, 6, 0, source, destination
    )
    return header + b"\x01" * (ihl * 4 - 20) + segment


def reply_segment(sport: int, dport: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 777, ack, 5 << 4, flags, 1000, 0, 0)


def test_parse_ipv4_reply_with_and_without_options() -> None:
    segment = reply_segment(8080, 40000, 1235, packet.SYN | packet.ACK)
    for ihl in (5, 7):
        reply = packet.parse_ipv4(ipv4(DST4, SRC4, segment, ihl))
        assert reply == packet.Reply(DST4, 8080, 40000, 1235, packet.SYN | packet.ACK)
        assert reply is not None and reply.key == (DST4, 8080, 40000)


def test_parse_ipv4_refuses_what_it_cannot_read() -> None:
    segment = reply_segment(8080, 40000, 1235, packet.RST | packet.ACK)
    assert packet.parse_ipv4(ipv4(DST4, SRC4, segment)[:30]) is None  # cut short
    assert packet.parse_ipv4(ipv4(DST4, SRC4, segment, frag=0x0010)) is None  # a later fragment
    udp = bytearray(ipv4(DST4, SRC4, segment))
    udp[9] = 17
    assert packet.parse_ipv4(bytes(udp)) is None
    assert packet.parse_ipv4(b"\x60" + bytes(40)) is None  # not IPv4
    assert packet.parse_segment(DST6, segment[:10]) is None
    reply = packet.parse_segment(DST6, segment)
    assert reply is not None and reply.key == (DST6, 8080, 40000)


def test_verdict() -> None:
    assert packet.verdict(packet.SYN | packet.ACK) is True
    assert packet.verdict(packet.RST | packet.ACK) is False
    assert packet.verdict(packet.RST) is None  # a reset without ACK answers no SYN of ours
    assert packet.verdict(packet.SYN) is None  # our own SYN seen on loopback
    assert packet.verdict(packet.ACK) is None
    assert packet.verdict(packet.ACK | packet.PSH) is None


# ------------------------------------------------------------ socket filter


def run_bpf(code: list[bpf.Instruction], data: bytes) -> int:
    """A classic BPF interpreter for the instructions `bpf.program` uses."""
    a = x = 0
    pc = 0
    while True:
        op, jt, jf, k = code[pc]
        if op == bpf.LDX_B_MSH:
            x = 4 * (data[k] & 0x0F)
        elif op == bpf.LD_H_IND:
            if x + k + 2 > len(data):
                return 0
            a = struct.unpack_from("!H", data, x + k)[0]
        elif op == bpf.LD_H_ABS:
            if k + 2 > len(data):
                return 0
            a = struct.unpack_from("!H", data, k)[0]
        elif op == bpf.JEQ_K:
            pc += jt if a == k else jf
        elif op == bpf.RET_K:
            return k
        else:
            raise AssertionError("unexpected opcode %#x" % op)
        pc += 1


@pytest.mark.parametrize("ihl", [5, 6, 15])
def test_ipv4_filter_keeps_only_our_ports(ihl: int) -> None:
    ports = [40000, 40007, 51234]
    code = bpf.program(socket.AF_INET, ports)
    for port in ports:
        segment = reply_segment(80, port, 1, packet.SYN | packet.ACK)
        assert run_bpf(code, ipv4(DST4, SRC4, segment, ihl)) == bpf.SNAP
    for port in (22, 39999, 40001, 51235):
        segment = reply_segment(80, port, 1, packet.SYN | packet.ACK)
        assert run_bpf(code, ipv4(DST4, SRC4, segment, ihl)) == 0
    # a segment FROM one of our ports to someone else's (our own SYN on loopback)
    own = reply_segment(40000, 80, 0, packet.SYN)
    assert run_bpf(code, ipv4(SRC4, DST4, own, ihl)) == 0


def test_ipv6_filter_reads_the_bare_segment() -> None:
    code = bpf.program(socket.AF_INET6, [40000])
    assert run_bpf(code, reply_segment(80, 40000, 1, packet.RST | packet.ACK)) == bpf.SNAP
    assert run_bpf(code, reply_segment(80, 40001, 1, packet.RST | packet.ACK)) == 0


def test_filter_size_is_bounded() -> None:
    with pytest.raises(ValueError):
        bpf.program(socket.AF_INET, [])
    with pytest.raises(ValueError):
        bpf.program(socket.AF_INET, list(range(1000, 1250)))


# ----------------------------------------------------------------- matching


def test_only_the_exact_answer_resolves_a_probe() -> None:
    pending = Pending()
    got: list[tuple[bool, float]] = []

    def resolve(answer: bool, when: float) -> None:
        got.append((answer, when))

    key = (DST4, 8080, 40000)
    pending.add(key, 0xFFFFFFFF, resolve)  # ack wraps to 0
    synack = packet.SYN | packet.ACK
    assert pending.match(packet.Reply(DST4, 8080, 40000, 0xFFFFFFFF, synack)) is None  # our seq
    assert pending.match(packet.Reply(DST4, 8080, 40001, 0, synack)) is None  # other port
    assert pending.match(packet.Reply(DST4, 8081, 40000, 0, synack)) is None  # other service
    assert pending.match(packet.Reply(SRC4, 8080, 40000, 0, synack)) is None  # other host
    assert pending.match(packet.Reply(DST4, 8080, 40000, 0, packet.SYN)) is None  # no ACK
    assert pending.busy(key)
    assert pending.match(packet.Reply(DST4, 8080, 40000, 0, synack)) == (resolve, True)
    # answered: off the table, so a duplicate (retransmitted SYN-ACK) matches nothing
    assert not pending.busy(key) and len(pending) == 0
    assert pending.match(packet.Reply(DST4, 8080, 40000, 0, packet.RST | packet.ACK)) is None

    pending.add(key, 41, resolve)
    assert pending.match(packet.Reply(DST4, 8080, 40000, 42, packet.RST | packet.ACK)) == (
        resolve,
        False,
    )

    # remove() by an older probe leaves a newer one on the same key alone
    def newer(answer: bool, when: float) -> None:
        raise AssertionError("not called")

    pending.add(key, 99, newer)
    pending.remove(key, resolve)
    assert pending.busy(key)
    pending.remove(key, newer)
    assert not pending.busy(key)
    pending.add(key, 7, newer)
    pending.clear()
    assert len(pending) == 0 and got == []
