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
from haecs_monitor.checks.syn.pending import Key, Pending, Resolve
from haecs_monitor.checks.syn.ports import PortPool
from haecs_monitor.checks.syn.route import SOURCE_MAX_AGE, source_address
from haecs_monitor.config.model import CheckSpec

RECEIVE_BUFFER = 4 << 20  # answers queued while the loop is busy
READS_PER_WAKEUP = 256

UP = up("SYN-ACK: listening")
REFUSED = down("refused (RST)")
_NO_KEY: Key = (b"", 0, 0)


class SynProber:
    def __init__(
        self, family: int, loop: asyncio.AbstractEventLoop, sock: socket.socket, ports: PortPool
    ) -> None:
        self.family = family
        self.loop = loop
        self._sock = sock
        self._ports = ports
        self._pending = Pending()
        # IPv4: the checksum's share of the source address the kernel chose
        # towards each destination address (packet.source_share: one int per
        # source, the addresses the configuration's own strings), all learned
        # again every SOURCE_MAX_AGE.  An address no check probes any more is
        # gone by then, with no object or bookkeeping per target (a target
        # object with its own expiry was 64 B per real server).
        self._shares: dict[str, int] = {}
        self._source_shares: dict[bytes, int] = {}  # by source address: a few
        # The age of all of them: from _shares_since, until _shares_until
        # (both kept: now + age - age is not always now again in floats).
        self._shares_since = 0.0
        self._shares_until = 0.0
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
        self._pending.clear()

    def accepts(self, address: str) -> bool:
        """Whether ADDRESS is an address of this prober's family."""
        try:
            socket.inet_pton(self.family, address)
        except (OSError, ValueError):
            return False
        return True

    def knows(self, address: str) -> bool:
        """Whether the source address towards ADDRESS is known now."""
        return address in self._shares

    def send(
        self, address: str, port: int, now: float, resolve: Resolve
    ) -> tuple[Optional[CheckResult], Key]:
        """Send one SYN to ADDRESS:PORT; RESOLVE gets its answer.  A result
        instead when it could not be sent (no route: down; a local fault:
        unknown).  The caller times the probe out: `cancel(key, resolve)`."""
        try:
            packed = socket.inet_pton(self.family, address)
        except (OSError, ValueError) as error:
            return down("address: %s" % error), _NO_KEY
        share: Optional[int] = None
        if self._ipv4:
            try:
                share = self._share(address, now)
            except OSError as error:
                return os_error("route", error), _NO_KEY
        our_port = self._ports.take()
        key = (packed, port, our_port)
        if self._pending.busy(key):  # every port of the pool busy towards this target
            return os_error("send", OSError(11, "all probe ports busy towards this target")), key
        seq = self._random.getrandbits(32)
        if share is not None:
            segment = packet.syn_to(share, packed, our_port, port, seq)
        else:  # IPv6: the kernel fills in the checksum (IPV6_CHECKSUM)
            segment = packet.syn_segment(our_port, port, seq)
        self._pending.add(key, seq, resolve)
        try:
            self._sock.sendto(segment, (address, self._destination_port))
        except OSError as error:
            self._pending.remove(key, resolve)
            return os_error("send", error), key
        return None, key

    def _share(self, address: str, now: float) -> int:
        """The checksum share of our source address towards ADDRESS, learned
        when not known (every address again after SOURCE_MAX_AGE, or after
        the clock was set back); OSError when there is no route or no
        descriptor."""
        if not self._shares_since <= now < self._shares_until:
            self._shares.clear()
            self._source_shares.clear()
            self._shares_since = now
            self._shares_until = now + SOURCE_MAX_AGE
        share = self._shares.get(address)
        if share is None:
            source = source_address(self.family, address)
            share = self._source_shares.get(source)
            if share is None:
                share = self._source_shares[source] = packet.source_share(source)
            self._shares[address] = share
        return share

    def cancel(self, key: Key, resolve: Resolve, timed_out: bool, address: str) -> None:
        """Stop waiting for a probe; after a timeout, learn the source address
        towards ADDRESS again at the next probe (a route may have changed)."""
        self._pending.remove(key, resolve)
        if timed_out:
            self._shares.pop(address, None)

    async def probe(self, spec: CheckSpec, address: str, port: int) -> CheckResult:
        """One probe as a coroutine: send, wait for the answer or the timeout."""
        loop = self.loop
        now = loop.time()
        future: asyncio.Future[Optional[bool]] = loop.create_future()

        def resolve(answer: bool, _when: float) -> None:
            if not future.done():
                future.set_result(answer)

        failed, key = self.send(address, port, now, resolve)
        if failed is not None:
            return failed
        timer = loop.call_at(now + spec.timing.timeout, _expire, future)
        try:
            answer = await future
        finally:
            timer.cancel()
            self.cancel(key, resolve, future.done() and future.result() is None, address)
        if answer is None:
            return timed_out(spec, now)
        return UP if answer else REFUSED

    def _on_readable(self, now: Optional[float] = None) -> None:
        """Read the answers queued (up to READS_PER_WAKEUP) and resolve their
        probes at NOW (default: the loop's time, read once for the lot).
        Reading stops when an answer leaves no probe waiting: what else may
        be queued (strays, duplicates) wakes the loop again, and it is not
        worth a recv() that finds nothing at every wake-up (a system call
        each, costly in a user-mode-Linux guest).  Otherwise it reads until
        nothing is left, so that strays never keep the socket readable."""
        sock = self._sock
        pending = self._pending
        match = pending.match
        ipv4 = self._ipv4
        answers: list[tuple[Resolve, bool]] = []
        for _unused in range(READS_PER_WAKEUP):
            try:
                if ipv4:
                    reply = packet.parse_ipv4(sock.recv(bpf.SNAP))
                else:
                    data, sender = sock.recvfrom(bpf.SNAP)
                    peer = socket.inet_pton(self.family, sender[0].partition("%")[0])
                    reply = packet.parse_segment(peer, data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # nothing this socket can tell us now; probes time out
            if reply is not None:
                matched = match(reply)
                if matched is not None:
                    answers.append(matched)
                    if not pending:
                        break
        if answers:
            if now is None:
                now = self.loop.time()  # one clock read for the lot
            for resolve, answer in answers:
                resolve(answer, now)

    def read_now(self, now: float) -> None:
        """Read what has arrived before NOW, when probes are timed out."""
        self._on_readable(now)


def _expire(future: asyncio.Future[Optional[bool]]) -> None:
    if not future.done():
        future.set_result(None)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(bpf.SNAP)
        except OSError:
            return
