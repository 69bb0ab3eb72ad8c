# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPVS engine shared by the modules and the monitor.

Layers, bottom up: ``netlink`` (generic netlink framing, socket and the IPVS
codec), ``model`` (services and real servers as values), ``params``
(field validation), ``plan`` (the operations from one table to another),
``engine`` (read, apply, roll back), ``kmod`` (kernel modules), ``config``
(timeouts and the sync daemon), ``rules`` (``ipvsadm -S`` rule files).
No Ansible import anywhere in this package: tests/unit prove it.
"""
