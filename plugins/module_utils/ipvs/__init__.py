# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPVS engine shared by the modules and the monitor.

Layers, bottom up: ``netlink`` (generic netlink framing, socket and the IPVS
codec), ``model`` (services and real servers as values), ``params``
(field validation), ``plan`` (the operations from one table to another),
``engine`` (read, apply, roll back), ``kmod`` (kernel modules), ``config``
(timeouts and the sync daemon), ``rules`` (``ipvsadm -S`` rule files).
No Ansible import anywhere in this package: tests/unit prove it.

What a read of the table imports is kept to what it runs: `typing` only for
mypy (``TYPE_CHECKING``), `_socket` rather than `socket` (which builds its
enums at import) and `ipaddress` when an address is first parsed.  A
whole-process read of 11,000 entries in the test kernel spent a quarter of
its time in imports before (tests/unit prove what it imports).
"""
