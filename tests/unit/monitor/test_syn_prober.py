"""The SYN prober's per-address state, without a raw socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from haecs_monitor.checks.syn import packet
from haecs_monitor.checks.syn import prober as prober_module
from haecs_monitor.checks.syn.prober import SynProber
from haecs_monitor.checks.syn.route import SOURCE_MAX_AGE


class _Socket:
    """Records what is sent; its descriptor is a real one for the loop."""

    def __init__(self, real: socket.socket) -> None:
        self._real = real
        self.sent: list[tuple[bytes, Any]] = []

    def fileno(self) -> int:
        return self._real.fileno()

    def sendto(self, data: bytes, address: Any) -> int:
        self.sent.append((data, address))
        return len(data)


class _Ports:
    def take(self) -> int:
        return 40000


def _prober(loop: asyncio.AbstractEventLoop, real: socket.socket) -> tuple[SynProber, _Socket]:
    sock = _Socket(real)
    return SynProber(socket.AF_INET, loop, sock, _Ports()), sock  # type: ignore[arg-type]


def _send(prober: SynProber, address: str, port: int, now: float) -> Any:
    return prober.send(address, port, now, lambda answer, when: None)


def test_a_probe_is_keyed_by_the_packed_address_it_packs_when_sent() -> None:
    loop = asyncio.new_event_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
            prober, sock = _prober(loop, real)
            failed, key = _send(prober, "127.0.0.1", 8080, 5.0)
            assert failed is None
            assert key == (socket.inet_aton("127.0.0.1"), 8080, 40000)
            ((segment, address),) = sock.sent
            assert address == ("127.0.0.1", 0)
            assert segment[:4] == (40000).to_bytes(2, "big") + (8080).to_bytes(2, "big")
            expected = packet.syn_to(
                packet.source_share(socket.inet_aton("127.0.0.1")),
                socket.inet_aton("127.0.0.1"),
                40000,
                8080,
                int.from_bytes(segment[4:8], "big"),
            )
            assert segment == expected  # the checksum over our real source address
    finally:
        loop.close()


@pytest.fixture
def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The destinations whose source address was looked up: all through
    192.0.2.1, but 10.9.9.9 which has no route."""
    destinations: list[str] = []

    def source_address(family: int, destination: str) -> bytes:
        destinations.append(destination)
        if destination == "10.9.9.9":
            raise OSError(101, "Network is unreachable")
        return socket.inet_aton("192.0.2.1")

    monkeypatch.setattr(prober_module, "source_address", source_address)
    return destinations


@pytest.fixture
def fake() -> Iterator[tuple[SynProber, _Socket]]:
    """A prober on a socket that records what is sent."""
    loop = asyncio.new_event_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
            yield _prober(loop, real)
    finally:
        loop.close()


def test_the_source_is_known_per_address_one_int_per_source_and_all_learned_again_after_its_age(
    looked_up: list[str], fake: tuple[SynProber, _Socket]
) -> None:
    """One entry per address (not per port, no object per target), one
    checksum share per source; every address is learned again after
    SOURCE_MAX_AGE, so one no check probes any more is gone by then."""
    prober, sock = fake
    for port in (80, 443):
        _send(prober, "10.0.0.1", port, 100.0)
    _send(prober, "10.0.0.2", 80, 100.5)
    assert looked_up == ["10.0.0.1", "10.0.0.2"]
    assert prober.knows("10.0.0.1") and prober.knows("10.0.0.2")
    assert prober._shares["10.0.0.1"] is prober._shares["10.0.0.2"]
    _send(prober, "10.0.0.1", 81, 100.0 + SOURCE_MAX_AGE - 0.01)
    assert looked_up == ["10.0.0.1", "10.0.0.2"]
    _send(prober, "10.0.0.1", 82, 100.0 + SOURCE_MAX_AGE)
    assert looked_up[2:] == ["10.0.0.1"]
    assert not prober.knows("10.0.0.2")  # not probed since: gone
    _send(prober, "10.0.0.1", 83, 20.0)  # the clock was set back
    assert looked_up[3:] == ["10.0.0.1"]
    assert len(sock.sent) == 6


def test_a_new_age_begins_once_whatever_the_float_rounding(
    looked_up: list[str], fake: tuple[SynProber, _Socket]
) -> None:
    """At a time where now + age - age rounds above now, the sends of one
    tick must not each begin the age again (a review found each of them
    clearing the cache and looking the route up)."""
    now = next(
        t / 1000
        for t in range(60000, 120000)
        if (t / 1000 + SOURCE_MAX_AGE) - SOURCE_MAX_AGE > t / 1000
    )
    prober, _sock = fake
    for port in (80, 81):
        for address in ("10.0.0.1", "10.0.0.2"):
            _send(prober, address, port, now)
    assert looked_up == ["10.0.0.1", "10.0.0.2"]


def test_a_timed_out_probe_learns_its_source_again_and_a_bad_address_is_down(
    looked_up: list[str], fake: tuple[SynProber, _Socket]
) -> None:
    prober, sock = fake

    def resolve(answer: bool, when: float) -> None:
        pass

    _failed, key = prober.send("10.0.0.1", 80, 1.0, resolve)
    prober.cancel(key, resolve, False, "10.0.0.1")  # dropped: still known
    assert prober.knows("10.0.0.1")
    _failed, key = prober.send("10.0.0.1", 80, 2.0, resolve)
    prober.cancel(key, resolve, True, "10.0.0.1")  # timed out: learned again
    assert not prober.knows("10.0.0.1")
    _send(prober, "10.0.0.1", 81, 3.0)
    assert looked_up == ["10.0.0.1", "10.0.0.1"]
    failed, _key = _send(prober, "10.9.9.9", 80, 3.0)
    assert failed is not None and failed.outcome == "down" and "route" in failed.detail
    assert not prober.knows("10.9.9.9")
    failed, _key = _send(prober, "fe80::1", 80, 3.0)
    assert failed is not None and failed.outcome == "down" and "address" in failed.detail
    assert not prober.accepts("fe80::1") and prober.accepts("10.0.0.1")
    assert len(sock.sent) == 3


class _Answering(_Socket):
    """Also queues segments to read: recv() hands them out, then would block."""

    def __init__(self, real: socket.socket) -> None:
        super().__init__(real)
        self.queued: list[bytes] = []
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        if not self.queued:
            raise BlockingIOError(11, "nothing queued")
        return self.queued.pop(0)


def _syn_ack(segment: bytes, address: str) -> bytes:
    """The IPv4 packet from ADDRESS that answers our SYN SEGMENT."""
    our_port, port, seq = int.from_bytes(segment[:2], "big"), segment[2:4], segment[4:8]
    ack = ((int.from_bytes(seq, "big") + 1) & 0xFFFFFFFF).to_bytes(4, "big")
    header = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, socket.IPPROTO_TCP, 0, 0])
    header += socket.inet_aton(address) + socket.inet_aton("192.0.2.1")
    tcp = port + our_port.to_bytes(2, "big") + bytes(4) + ack + bytes([0x50, 0x12]) + bytes(6)
    return header + tcp


def test_reading_stops_when_no_probe_waits_but_strays_are_read_to_the_end(
    looked_up: list[str],
) -> None:
    """Once the answers leave no probe waiting, no recv() looks for more (a
    system call that finds nothing at each wake-up); with nothing waiting,
    what is queued is read until nothing is left, so a stray cannot keep the
    socket readable.  Answers read at a time given are resolved at it."""
    loop = asyncio.new_event_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
            sock = _Answering(real)
            prober = SynProber(socket.AF_INET, loop, sock, _Ports())  # type: ignore[arg-type]
            answers: list[tuple[bool, float]] = []
            for address in ("10.0.0.1", "10.0.0.2"):
                failed, _key = prober.send(
                    address, 80, 5.0, lambda answer, when: answers.append((answer, when))
                )
                assert failed is None
            (first, _first_to), (second, _second_to) = sock.sent
            stray = _syn_ack(first, "10.0.0.3")
            sock.queued = [_syn_ack(first, "10.0.0.1"), _syn_ack(second, "10.0.0.2"), stray]
            prober.read_now(7.5)
            assert answers == [(True, 7.5), (True, 7.5)]
            assert sock.reads == 2 and sock.queued == [stray]
            prober.read_now(8.0)  # nothing waits: the stray, then nothing
            assert sock.reads == 4 and sock.queued == [] and len(answers) == 2
    finally:
        loop.close()
