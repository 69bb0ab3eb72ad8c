"""systemd's notify protocol: READY, RELOADING, STOPPING, STATUS, WATCHDOG.

A datagram to $NOTIFY_SOCKET (a path, or an abstract name written with a
leading '@'), as sd_notify(3) sends it: a few lines of the standard library
instead of a dependency.  Without $NOTIFY_SOCKET (not started by systemd,
or Type= other than notify) every call does nothing.

The watchdog is fed from the event loop's own ticker (looplag), so a wedged
loop stops feeding it and systemd restarts the service (WatchdogSec=).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from typing import Callable, Optional


class Notifier:
    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env: Mapping[str, str] = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: Optional[str] = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        self._clock = clock
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        # Feed at half the interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_every: Optional[float] = (
            int(usec) / 2e6
            if usec.isascii() and usec.isdigit() and int(usec) > 0 and mine
            else None
        )
        self._fed = 0.0
        self.sent: deque[str] = deque(maxlen=20)  # the last messages sent

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send KEY=VALUE lines; False when not under systemd or it failed."""
        if self._address is None:
            return False
        message = "\n".join(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a receiver whose queue is full
                # (net.unix.max_dgram_qlen) costs a message, not a stall.
                sock.sendto(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", "STATUS=" + _one_line(status))

    def reloading(self) -> bool:
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        return self.send("RELOADING=1", "MONOTONIC_USEC=%d" % usec)

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + _one_line(text))

    def feed_watchdog(self) -> bool:
        """WATCHDOG=1, at most every half interval; called from the loop's ticker."""
        if self.watchdog_every is None:
            return False
        now = self._clock()
        if now - self._fed < self.watchdog_every:
            return False
        self._fed = now
        return self.send("WATCHDOG=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
