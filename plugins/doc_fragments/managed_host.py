# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every haecs.lvs module needs on the managed host."""

from __future__ import annotations


class ModuleDocFragment:
    # ansible-doc merges a fragment's requirements into the module's; it
    # insists on an options key, hence the empty one.
    DOCUMENTATION = r"""
options: {}
requirements:
  - Python 3.8 or newer on the managed host
  - root (CAP_NET_ADMIN)
"""

    # The IPVS modules.
    IPVS = r"""
options: {}
requirements:
  - Linux kernel with IPVS (C(ip_vs)); the module and the schedulers' modules are loaded when missing
"""
