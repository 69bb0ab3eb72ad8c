"""systemd's notify protocol, against a real datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from haecs_monitor.runtime import sdnotify
from haecs_monitor.runtime.events import EventLog
from haecs_monitor.runtime.looplag import LoopLag


@pytest.fixture
def notify_socket(tmp_path: Any) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = sdnotify.Notifier(environ={})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.feed_watchdog()


def test_ready_reloading_status_stopping(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = sdnotify.Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.ready("2 services,\n 3/4 real servers up")
    assert notifier.reloading()
    assert notifier.status("x")
    assert notifier.stopping()
    ready, reloading, status, stopping = received(sock)
    assert ready == "READY=1\nSTATUS=2 services, 3/4 real servers up"
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(reloading.split("=")[-1]) > 0
    assert (status, stopping) == ("STATUS=x", "STOPPING=1")


def test_abstract_socket_names(tmp_path: Any) -> None:
    name = "haecs-test-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sdnotify.Notifier(environ={"NOTIFY_SOCKET": "@" + name}).status("abstract")
        assert sock.recv(100) == b"STATUS=abstract"


def test_watchdog_is_fed_by_the_loop_ticker_at_half_the_interval(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    notifier = sdnotify.Notifier(environ=environ)
    assert notifier.watchdog_every == pytest.approx(0.1)
    assert sdnotify.Notifier(environ={**environ, "WATCHDOG_PID": "1"}).watchdog_every is None
    fed_at: list[float] = []
    got: list[str] = []

    def tick() -> None:
        if notifier.feed_watchdog():
            fed_at.append(time.monotonic())
        got.extend(received(sock))  # as systemd would, keep the queue short

    async def main() -> tuple[float, float]:
        with open(os.devnull, "w") as sink:
            lag = LoopLag(EventLog(sink), period=0.05, on_tick=tick)
            lag.start()
            await asyncio.sleep(0.6)
            wedged_from = time.monotonic()
            time.sleep(0.6)  # a wedged loop: the ticker cannot run
            wedged_to = time.monotonic()
            await asyncio.sleep(0.6)
            await lag.stop()
        return wedged_from, wedged_to

    wedged_from, wedged_to = asyncio.run(main())
    assert got + received(sock) == ["WATCHDOG=1"] * len(fed_at)
    assert not [t for t in fed_at if wedged_from < t < wedged_to]  # nothing while wedged
    assert len([t for t in fed_at if t <= wedged_from]) >= 2  # fed before...
    assert len([t for t in fed_at if t >= wedged_to]) >= 2  # ...and again after
    gaps = [b - a for a, b in zip(fed_at, fed_at[1:])]
    assert min(gaps) >= 0.099  # never more often than half the interval


def test_a_full_receiver_costs_a_message_not_a_stall(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    notifier = sdnotify.Notifier(environ={"NOTIFY_SOCKET": path})
    import threading

    sent: list[bool] = []
    sender = threading.Thread(
        target=lambda: sent.extend(notifier.status("n%d" % n) for n in range(200)), daemon=True
    )
    sender.start()  # nobody reads: a blocking send would never return
    sender.join(30)
    assert not sender.is_alive(), "sending to a full receiver blocked"
    assert sent[0] and not all(sent)  # the queue filled up; later ones were dropped
    assert received(sock)[0] == "STATUS=n0"
