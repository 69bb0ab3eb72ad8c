"""SYN probes of one address family through one raw socket.

A probe sends one SYN from a reserved port (`ports`) with a random
sequence number, and waits for the segment that answers it: from the
target's address and port, to our port, acknowledging our sequence number
plus one.  SYN-ACK: a socket listens there (up; the kernel resets the
half-open connection for us, no socket owns our port).  RST: refused
(down).  Nothing before the timeout: timed out (down).  ICMP errors are not
read (see the design notes): an unreachable target times out.

Per probe: one sendto(), one recv() of the answer (several per wake-up),
a future and a timer; no socket, no connect, no close.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Optional

from haecs_monitor.checks.base import CheckResult, down, os_error, timed_out, up
from haecs_monitor.checks.syn import bpf, packet
from haecs_monitor.checks.syn.pending import Answer, Pending
from haecs_monitor.checks.syn.ports import PortPool
from haecs_monitor.checks.syn.route import SOURCE_MAX_AGE, source_address
from haecs_monitor.config.model import CheckSpec

RECEIVE_BUFFER = 4 << 20  # answers queued while the loop is busy
READS_PER_WAKEUP = 256

_UP = up("SYN-ACK: listening")
_REFUSED = down("refused (RST)")


class Target:
    """What stays the same between probes of one address and port."""

    __slots__ = ("address", "expires", "packed", "port", "template")

    def __init__(self, family: int, address: str, port: int) -> None:
        self.address = address
        self.packed = socket.inet_pton(family, address)  # OSError: not an address
        self.port = port
        self.template: Optional[packet.SynTemplate] = None
        self.expires = 0.0


class SynProber:
    def __init__(
        self, family: int, loop: asyncio.AbstractEventLoop, sock: socket.socket, ports: PortPool
    ) -> None:
        self.family = family
        self.loop = loop
        self._sock = sock
        self._ports = ports
        self._pending = Pending()
        self._targets: dict[tuple[str, int], Target] = {}
        self._random = random.Random()
        self._ipv4 = family == socket.AF_INET
        self._destination_port = 0 if self._ipv4 else socket.IPPROTO_TCP
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    def open(cls, family: int, loop: asyncio.AbstractEventLoop) -> SynProber:
        """A prober with its raw socket, filter and ports; OSError when the
        raw socket cannot be had (PermissionError without CAP_NET_RAW)."""
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        try:
            ports = PortPool(family)
        except OSError:
            sock.close()
            raise
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, packet.CHECKSUM_OFFSET)
            bpf.attach(sock, bpf.program(family, ports.ports))
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError:
                pass  # the default buffer still works
            _drain(sock)  # what arrived before the filter was attached
            return cls(family, loop, sock, ports)
        except BaseException:
            sock.close()
            ports.close()
            raise

    @property
    def ports(self) -> tuple[int, ...]:
        return self._ports.ports

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            if not self.loop.is_closed():
                self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._ports.close()
        self._pending.cancel_all()

    def target(self, address: str, port: int) -> Target:
        """The cached target; OSError when ADDRESS is not one of this family."""
        target = self._targets.get((address, port))
        if target is None:
            target = self._targets[(address, port)] = Target(self.family, address, port)
        return target

    def forget(self, address: str, port: int) -> None:
        self._targets.pop((address, port), None)

    async def probe(self, spec: CheckSpec, target: Target) -> CheckResult:
        loop = self.loop
        now = loop.time()
        if self._ipv4 and (target.template is None or target.expires <= now):
            try:
                source = source_address(self.family, target.address)
            except OSError as error:
                return os_error("route", error)
            target.template = packet.SynTemplate(source, target.packed, target.port)
            target.expires = now + SOURCE_MAX_AGE
        our_port = self._ports.take()
        key = (target.packed, target.port, our_port)
        if self._pending.busy(key):  # every port of the pool busy towards this target
            return os_error("send", OSError(11, "all probe ports busy towards this target"))
        seq = self._random.getrandbits(32)
        if target.template is not None:
            segment = target.template.build(our_port, seq)
        else:  # IPv6: the kernel fills in the checksum (IPV6_CHECKSUM)
            segment = packet.syn_segment(our_port, target.port, seq)
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.add(key, seq, future)
        try:
            self._sock.sendto(segment, (target.address, self._destination_port))
        except OSError as error:
            self._pending.remove(key, future)
            return os_error("send", error)
        timer = loop.call_at(now + spec.timeout, _expire, future)
        try:
            answer = await future
        finally:
            timer.cancel()
            self._pending.remove(key, future)
        if answer is None:
            target.expires = 0.0  # learn the source address again next time
            return timed_out(spec, now)
        return _UP if answer else _REFUSED

    def _on_readable(self) -> None:
        sock = self._sock
        answer = self._pending.answer
        ipv4 = self._ipv4
        for _unused in range(READS_PER_WAKEUP):
            try:
                if ipv4:
                    reply = packet.parse_ipv4(sock.recv(bpf.SNAP))
                else:
                    data, sender = sock.recvfrom(bpf.SNAP)
                    peer = socket.inet_pton(self.family, sender[0].partition("%")[0])
                    reply = packet.parse_segment(peer, data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # nothing this socket can tell us now; probes time out
            if reply is not None:
                answer(reply)


def _expire(future: asyncio.Future[Answer]) -> None:
    if not future.done():
        future.set_result(None)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(bpf.SNAP)
        except OSError:
            return
