# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection: the controller itself, inside one of its network namespaces."""

# ruff: noqa: E402 (ansible-test wants the imports after the documentation)

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks in a network namespace of the controller
version_added: 0.1.0
description:
  - Runs every command and module of a task on the controller, like
    P(ansible.builtin.local#connection), but inside the named network
    namespace C(/run/netns/NAME) that C(ip netns add NAME) made. The task sees
    that namespace's links, addresses, routes, IPVS table and nftables
    ruleset, and the controller's own file system.
  - One inventory host per namespace makes a whole cluster (client, directors,
    real servers) on one machine, for a lab or a test.
  - Each command runs as C(ip netns exec NAME /bin/sh -c CMD), so it also gets
    what C(ip netns exec) gives. C(/sys) shows the namespace's devices (the
    facts of M(ansible.builtin.setup) read them there) and the files of
    C(/etc/netns/NAME/) are bind-mounted over those of C(/etc), in a mount
    namespace that ends with the command.
  - Files are copied, not sent. The namespace shares the controller's file
    system, so M(ansible.builtin.copy) and M(ansible.builtin.fetch) read and
    write the controller's files.
author: HAECS developers (!UNKNOWN)
requirements:
  - the C(ip) command (iproute2) on the controller
  - the controller runs as root (entering a namespace needs CAP_SYS_ADMIN)
options:
  netns:
    description:
      - Name of the network namespace, a file in C(/run/netns) (C(ip netns list)
        shows them).
      - Required. A name is a single file name, as C(ip netns add) takes it (not
        empty, no C(/), not C(.) or C(..), at most 255 bytes).
    type: str
    vars:
      - name: haecs_netns
  # The options below are ansible.builtin.local's, whose code this plugin runs.
  become_success_timeout:
    type: int
    default: 10
    description:
      - Number of seconds to wait for become to succeed when enabled.
      - The default will be used if the configured value is less than 1.
    vars:
      - name: ansible_local_become_success_timeout
  become_strip_preamble:
    type: bool
    default: true
    description:
      - Strip internal become output preceding command execution. Disable for additional diagnostics.
    vars:
      - name: ansible_local_become_strip_preamble
extends_documentation_fragment:
  - connection_pipelining
notes:
  - The controller (C(ansible-playbook)) must run as root; become on a task
    does not help, it acts inside the namespace.
  - The remote user is ignored, as with P(ansible.builtin.local#connection).
  - Mounts a task makes stay in its command's own mount namespace.
"""

EXAMPLES = r"""
# inventory.yml: two namespaces made beforehand with `ip netns add dir1`
# and `ip netns add rs1`.
# all:
#   vars:
#     ansible_connection: haecs.lvs.netns
#   hosts:
#     dir1: {haecs_netns: dir1}
#     rs1: {haecs_netns: rs1}

- name: The links each namespace has
  hosts: all
  gather_facts: false
  tasks:
    - name: List them
      ansible.builtin.command: ip -br link
      changed_when: false
"""

import os
import shlex
import shutil

import ansible.constants as C
from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection

# Where `ip netns add` puts the namespaces (iproute2's NETNS_RUN_DIR).
NETNS_DIR = "/run/netns"
# The inventory variable that names the namespace (the option's vars).
NETNS_VAR = "haecs_netns"
# Linux's NAME_MAX, iproute2's limit for a namespace name.
NAME_MAX = 255
NAME_RULE = "a single file name: not empty, no '/', not '.' or '..', at most %d bytes" % NAME_MAX


def check_name(name: object) -> str:
    """The namespace name of the inventory, or AnsibleConnectionFailure saying
    which rule it breaks (iproute2's own: ip netns add refuses the same)."""
    if name is None:
        raise AnsibleConnectionFailure(
            "%s is not set: the haecs.lvs.netns connection needs the name of a network "
            "namespace in %s (ip netns list shows them)" % (NETNS_VAR, NETNS_DIR)
        )
    if not isinstance(name, str):
        raise AnsibleConnectionFailure(
            "%s must be a string, %s, not %s" % (NETNS_VAR, NAME_RULE, type(name).__name__)
        )
    if (
        not name
        or "/" in name
        or "\0" in name
        or name in (".", "..")
        or len(name.encode("utf-8", "surrogateescape")) > NAME_MAX
    ):
        raise AnsibleConnectionFailure(
            "%s=%r is not a network namespace name: it must be %s" % (NETNS_VAR, name, NAME_RULE)
        )
    return name


def netns_path(name: str, netns_dir: str = NETNS_DIR) -> str:
    """The file of the namespace NAME, or AnsibleConnectionFailure when there
    is no such namespace."""
    path = os.path.join(netns_dir, name)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise AnsibleConnectionFailure(
            "%s=%r: no such network namespace (%s does not exist; ip netns list shows "
            "the names, ip netns add %s makes it)" % (NETNS_VAR, name, path, shlex.quote(name))
        ) from None
    except OSError as error:
        raise AnsibleConnectionFailure(
            "%s=%r: cannot read %s: %s" % (NETNS_VAR, name, path, error.strerror)
        ) from None
    # Every namespace file is on the one nsfs: a file that is not (a name
    # left behind by a failed `ip netns add`) is no namespace.
    if found.st_dev != os.stat("/proc/self/ns/net").st_dev:
        raise AnsibleConnectionFailure(
            "%s=%r: %s is not a network namespace (a plain file, no namespace is bound there)"
            % (NETNS_VAR, name, path)
        )
    return path


def check_root(euid: int) -> None:
    """AnsibleConnectionFailure unless EUID is root's."""
    if euid != 0:
        raise AnsibleConnectionFailure(
            "the haecs.lvs.netns connection must run as root (entering a network namespace "
            "needs CAP_SYS_ADMIN); ansible-playbook runs as uid %d: run it as root, become "
            "on a task does not help" % euid
        )


def wrap_command(cmd: str, name: str, shell: str, ip: str = "ip") -> str:
    """CMD as a shell command line that runs it inside the namespace NAME.

    The prefix is one quoted word list that the shell ansible.builtin.local
    starts replaces itself with (exec): no word of it is ever expanded."""
    return "exec " + shlex.join([ip, "netns", "exec", name, shell, "-c", cmd])


def find_ip() -> str:
    """The absolute path of the ip command, or AnsibleConnectionFailure."""
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not ip:
        raise AnsibleConnectionFailure(
            "the haecs.lvs.netns connection needs the ip command (iproute2) on the controller"
        )
    return ip


class Connection(LocalConnection):
    """ansible.builtin.local with every command inside a network namespace.

    Only the command changes: become, pipelining, the working directory and
    the file copies are local's own.  transport stays "local": the target is
    the controller (the reboot action refuses, commands start in the
    playbook's folder)."""

    transport = "local"

    _target: tuple[str, str] | None = None

    def _namespace(self) -> tuple[str, str]:
        """(name, path of ip), checked once per connection."""
        if self._target is None:
            check_root(os.geteuid())
            name = check_name(self.get_option("netns"))
            netns_path(name)
            self._target = (name, find_ip())
        return self._target

    def _connect(self) -> Connection:
        self._namespace()
        super()._connect()
        return self

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        name, ip = self._namespace()
        # The shell local runs every command with (DEFAULT_EXECUTABLE) runs
        # it inside the namespace too.
        shell = C.DEFAULT_EXECUTABLE.split()[0] if C.DEFAULT_EXECUTABLE else "/bin/sh"
        wrapped = wrap_command(cmd, name, shell, ip)
        result: tuple[int, bytes, bytes] = super().exec_command(
            wrapped, in_data=in_data, sudoable=sudoable
        )
        return result
