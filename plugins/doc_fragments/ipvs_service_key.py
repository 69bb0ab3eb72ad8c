# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the options that name a virtual service (its key)."""

from __future__ import annotations


class ModuleDocFragment:
    # The key options at the top level of a module (ipvs_service, ipvs_info).
    DOCUMENTATION = r"""
options:
  protocol:
    description:
      - Transport protocol of a service keyed by address and port.
      - Defaults to V(tcp). Not allowed together with O(fwmark).
    type: str
    choices: [tcp, udp, sctp]
  address:
    description:
      - Virtual IP address (IPv4 or IPv6) of the service.
      - Required unless O(fwmark) is given; not allowed together with O(fwmark).
    type: str
  port:
    description:
      - Port of the service, V(0) to V(65535).
      - Required with O(address). V(0) means all ports and is only allowed for
        a persistent service.
    type: int
  fwmark:
    description:
      - Firewall mark (V(1) to V(4294967295)) that keys the service instead of
        protocol, address and port. Mark packets with nftables or iptables.
    type: int
  family:
    description:
      - Address family of a fwmark service. Defaults to V(ipv4).
      - With O(address) it may be given but must match the address.
    type: str
    choices: [ipv4, ipv6]
"""

    # The key options nested under virtual_service (ipvs_real_server, ipvs_table entries).
    VIRTUAL_SERVICE = r"""
options:
  virtual_service:
    description:
      - The virtual service, named by its key (O(virtual_service.address) and
        O(virtual_service.port), or O(virtual_service.fwmark)).
      - The service must exist; create it with M(haecs.lvs.ipvs_service).
    type: dict
    required: true
    suboptions:
      protocol:
        description:
          - Transport protocol of a service keyed by address and port.
          - Defaults to V(tcp). Not allowed together with O(virtual_service.fwmark).
        type: str
        choices: [tcp, udp, sctp]
      address:
        description:
          - Virtual IP address (IPv4 or IPv6) of the service.
          - Required unless O(virtual_service.fwmark) is given.
        type: str
      port:
        description:
          - Port of the service. Required with O(virtual_service.address).
        type: int
      fwmark:
        description:
          - Firewall mark that keys the service instead of protocol, address and port.
        type: int
      family:
        description:
          - Address family of a fwmark service. Defaults to V(ipv4).
        type: str
        choices: [ipv4, ipv6]
"""
