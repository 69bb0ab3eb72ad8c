"""The SYN prober's per-target state, without a raw socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from haecs_monitor.checks.syn.prober import SynProber, Target
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


def test_a_probe_is_keyed_by_the_packed_address_it_packs_when_sent() -> None:
    loop = asyncio.new_event_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
            prober, sock = _prober(loop, real)
            target = prober.target("127.0.0.1", 8080)
            assert not hasattr(target, "packed")  # not kept per target
            failed, key = prober.send(target, 5.0, lambda answer, when: None)
            assert failed is None
            assert key == (socket.inet_aton("127.0.0.1"), 8080, 40000)
            ((segment, address),) = sock.sent
            assert address == ("127.0.0.1", 0)
            assert segment[:4] == (40000).to_bytes(2, "big") + (8080).to_bytes(2, "big")
            assert target.expires == 5.0 + SOURCE_MAX_AGE
    finally:
        loop.close()


def test_targets_learned_within_a_second_share_one_expiry_and_one_source_share() -> None:
    loop = asyncio.new_event_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
            prober, _sock = _prober(loop, real)
            first = prober._expiry(100.0)
            assert first == 100.0 + SOURCE_MAX_AGE
            assert prober._expiry(100.9) is first  # up to a second early, never late
            later = prober._expiry(101.0)
            assert later == 101.0 + SOURCE_MAX_AGE and later is not first
            assert prober._expiry(50.0) == 50.0 + SOURCE_MAX_AGE  # a clock set back
            one, two = prober.target("10.0.0.1", 80), prober.target("10.0.0.2", 80)
            for target in (one, two):
                prober.send(target, 200.0, lambda answer, when: None)
            assert isinstance(one, Target) and one.expires is two.expires
            # the same source address: one checksum share for both
            assert one.source_share is not None and one.source_share is two.source_share
    finally:
        loop.close()
