"""A classic BPF socket filter: the raw socket sees only TCP segments to our ports.

An IPv4 or IPv6 raw TCP socket gets a copy of every TCP segment the host
receives for itself (not forwarded or IPVS traffic, which never reaches
local delivery), so without a filter the monitor would wake up and parse
every packet of its API, ssh, ... Filtering in the kernel keeps only
segments whose destination port is one of the reserved probe ports.

An IPv4 raw socket's packet starts at the IP header (variable length: the
filter reads it), an IPv6 one's at the TCP header.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)

# opcodes (linux/filter.h)
LDX_B_MSH = 0x01 | 0x10 | 0xA0  # X = 4 * (packet[k] & 0x0f)
LD_H_IND = 0x00 | 0x08 | 0x40  # A = u16 at X + k
LD_H_ABS = 0x00 | 0x08 | 0x20  # A = u16 at k
JEQ_K = 0x05 | 0x10 | 0x00  # if A == k: skip jt else jf
RET_K = 0x06  # accept k bytes (0: drop)

SNAP = 128  # bytes kept per packet: IP header (<= 60) + the TCP header we parse
Instruction = tuple[int, int, int, int]  # code, jt, jf, k

_INSTRUCTION = struct.Struct("HBBI")


def program(family: int, ports: Sequence[int]) -> list[Instruction]:
    """Accept (SNAP bytes of) a packet whose TCP destination port is in PORTS."""
    if not 0 < len(ports) < 250:
        raise ValueError("between 1 and 249 ports, not %d" % len(ports))
    if family == socket.AF_INET:
        code: list[Instruction] = [(LDX_B_MSH, 0, 0, 0), (LD_H_IND, 0, 0, 2)]
    else:
        code = [(LD_H_ABS, 0, 0, 2)]
    count = len(ports)
    for index, port in enumerate(ports):
        code.append((JEQ_K, count - index, 0, port))  # true: to the accept below
    code.append((RET_K, 0, 0, 0))
    code.append((RET_K, 0, 0, SNAP))
    return code


def attach(sock: socket.socket, code: Sequence[Instruction]) -> None:
    """SO_ATTACH_FILTER (the kernel copies the program)."""
    blob = b"".join(_INSTRUCTION.pack(*instruction) for instruction in code)
    buffer = ctypes.create_string_buffer(blob, len(blob))
    fprog = struct.pack("HL", len(code), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
