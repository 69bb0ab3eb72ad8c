# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible connection to the test kernel's agent (tests/kernel/agent)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import time
from typing import Any, Optional

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
    name: haecs_kernel
    short_description: run tasks inside the test kernel booted by tests/kernel/with-agent
    description:
        - The controller runs on the host at native speed; each command and
          module runs inside the test kernel (user-mode Linux with IPVS)
          through the agent that C(tests/kernel/with-agent) started there.
        - Optionally inside a network namespace of that kernel (C(ip netns exec)).
        - Test tooling of this repository, not part of the collection.
    author: HAECS developers
    options:
        channel:
            description: The agent's channel folder.
            type: str
            required: true
            env:
                - name: HAECS_KERNEL_CHANNEL
        netns:
            description: Network namespace in the kernel to run in; the kernel's own when unset.
            type: str
            vars:
                - name: haecs_kernel_netns
        command_timeout:
            description:
                - Seconds to wait for one command before the task fails.
                - Not C(timeout), which every connection has (C(ansible_timeout),
                  10 s by default, meant for connecting); a cold module start in
                  a loaded test kernel can take longer than that.
            type: int
            default: 900
            env:
                - name: HAECS_KERNEL_COMMAND_TIMEOUT
        trace:
            description:
                - File to which each request's round trip (seconds) and command
                  are appended, to show where a target's time goes.
            type: path
            env:
                - name: HAECS_KERNEL_TRACE
    extends_documentation_fragment:
        - connection_pipelining
"""

_ids = itertools.count()

# A pipelined module comes as `/bin/sh -c '<interpreter> && sleep 0'` with
# the module on stdin (wrapped once more in /bin/sh -c below). Process
# creation is what user-mode Linux is slow at (about 0.25 s per shell, two
# shells per module), so that command runs the interpreter directly.
_PIPELINED = re.compile(r"/bin/sh -c '(?P<interpreter>/[^' ]+) && sleep 0'")


class Connection(ConnectionBase):
    transport = "haecs_kernel"
    has_pipelining = True

    def _connect(self) -> Connection:
        if not self._connected:
            channel = self.get_option("channel")
            if not os.path.exists(os.path.join(channel, "ready")):
                raise AnsibleConnectionFailure("no test-kernel agent listens at %s" % channel)
            self._connected = True
        return self

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        channel = self.get_option("channel")
        name = "%d-%d-%d.json" % (os.getpid(), id(self), next(_ids))
        final = os.path.join(channel, "req", name)
        with open(final + ".part", "w") as handle:
            json.dump(request, handle)
        os.rename(final + ".part", final)
        answer = os.path.join(channel, "resp", name)
        started = time.monotonic()
        deadline = started + int(self.get_option("command_timeout"))
        pause = 0.002
        while not os.path.exists(answer):
            if os.path.exists(os.path.join(channel, "gone")):
                raise AnsibleConnectionFailure("the test kernel ended (see its output)")
            if time.monotonic() > deadline:
                raise AnsibleConnectionFailure(
                    "no answer from the test kernel in %ss" % self.get_option("command_timeout")
                )
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
        with open(answer) as handle:
            reply: dict[str, Any] = json.load(handle)
        os.unlink(answer)
        trace = self.get_option("trace")
        if trace:
            what = request.get("argv") or request.get("put") or request.get("fetch")
            with open(trace, "a") as handle:
                handle.write("%.3f %s\n" % (time.monotonic() - started, what))
        return reply

    def exec_command(
        self, cmd: str, in_data: Optional[bytes] = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        pipelined = _PIPELINED.fullmatch(cmd) if in_data else None
        argv = [pipelined["interpreter"]] if pipelined else ["/bin/sh", "-c", cmd]
        netns = self.get_option("netns")
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        reply = self._call({"argv": argv, "stdin": base64.b64encode(in_data or b"").decode()})
        return reply["rc"], base64.b64decode(reply["stdout"]), base64.b64decode(reply["stderr"])

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        if not os.path.exists(in_path):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        with open(in_path, "rb") as handle:
            data = handle.read()
        reply = self._call(
            {"put": out_path, "data": base64.b64encode(data).decode(), "mode": 0o600}
        )
        if reply["rc"] != 0:
            raise AnsibleError(
                "put %s: %s" % (out_path, base64.b64decode(reply["stderr"]).decode())
            )

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        reply = self._call({"fetch": in_path})
        if reply["rc"] != 0:
            raise AnsibleError(
                "fetch %s: %s" % (in_path, base64.b64decode(reply["stderr"]).decode())
            )
        with open(out_path, "wb") as handle:
            handle.write(base64.b64decode(reply["stdout"]))

    def close(self) -> None:
        self._connected = False
