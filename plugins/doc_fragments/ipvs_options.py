# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tests/docgen/ipvs_options.py (make fragments): edit the tables there.
"""The options of a virtual service and of a real server (written once, in tests/docgen)."""

from __future__ import annotations


class ModuleDocFragment:
    # The service key at the top level (ipvs_info).
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
      - Required with O(address). V(0) means all ports and is only allowed for a persistent
        service.
    type: int
  fwmark:
    description:
      - Firewall mark (V(1) to V(4294967295)) that keys the service instead of protocol, address
        and port. Mark packets with M(haecs.lvs.fwmark), nftables or iptables.
    type: int
  family:
    description:
      - Address family of a fwmark service. Defaults to V(ipv4).
      - With O(address) it may be given but must match the address.
    type: str
    choices: [ipv4, ipv6]
"""

    # The service options at the top level (ipvs_service, with DOCUMENTATION for the key).
    SERVICE = r"""
options:
  scheduler:
    description:
      - Scheduling algorithm.
      - The kernel module (C(ip_vs_<scheduler>)) is loaded before any change.
      - Omitted keeps the current one; a new service gets V(wlc), as with C(ipvsadm).
    type: str
    choices: [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh]
  scheduler_flags:
    description:
      - Flags of the V(sh) and V(mh) schedulers (C(ipvsadm -b)). Each flag needs its scheduler,
        for example V(sh-port) needs O(scheduler=sh). An empty list removes them.
      - Omitted keeps the current flags while the scheduler stays (a new scheduler drops the
        old one's flags); a new service gets none.
    type: list
    elements: str
    choices: [sh-fallback, sh-port, mh-fallback, mh-port]
  one_packet:
    description:
      - One-packet scheduling (C(ipvsadm -o)) for UDP and fwmark services.
      - Omitted keeps the current setting; a new service gets V(false).
    type: bool
  persistence_timeout:
    description:
      - Makes the service persistent (C(ipvsadm -p)) for this many seconds (V(1) to V(2678400)).
        V(0) makes it not persistent (and drops the netmask and engine).
      - Omitted keeps the current persistence; a new service is not persistent.
    type: int
  persistence_netmask:
    description:
      - Persistence granularity of an IPv4 service as a netmask, for example V(255.255.255.0)
        (C(ipvsadm -M)). Needs a persistent service.
      - Omitted keeps the current one; a new persistent service gets V(255.255.255.255) (per
        client address).
    type: str
  persistence_prefix_length:
    description:
      - Persistence granularity of an IPv6 service as a prefix length (V(1) to V(128)). Needs
        a persistent service.
      - Omitted keeps the current one; a new persistent service gets V(128).
    type: int
  persistence_engine:
    description:
      - Persistence engine (C(ipvsadm --pe)); V(sip) needs a persistent UDP service. V(none)
        removes it.
      - Omitted keeps the current engine; a new service gets none.
    type: str
    choices: [sip, none]
"""

    # virtual_service and the real-server options at the top level (ipvs_real_server).
    REAL_SERVER = r"""
options:
  virtual_service:
    description:
      - The virtual service, named by its key (O(virtual_service.address) and O(virtual_service.port),
        or O(virtual_service.fwmark)).
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
          - Required unless O(virtual_service.fwmark) is given; not allowed together with
            O(virtual_service.fwmark).
        type: str
      port:
        description:
          - Port of the service, V(0) to V(65535).
          - Required with O(virtual_service.address). V(0) means all ports and is only allowed
            for a persistent service.
        type: int
      fwmark:
        description:
          - Firewall mark (V(1) to V(4294967295)) that keys the service instead of protocol,
            address and port. Mark packets with M(haecs.lvs.fwmark), nftables or iptables.
        type: int
      family:
        description:
          - Address family of a fwmark service. Defaults to V(ipv4).
          - With O(virtual_service.address) it may be given but must match the address.
        type: str
        choices: [ipv4, ipv6]
  address:
    description:
      - IPv4 or IPv6 address of the real server.
      - Its family must match the service unless O(forwarding=tunnel).
    type: str
    required: true
  port:
    description:
      - Port of the real server.
      - Only O(forwarding=masq) can map to another port; V(0) (the port the client asked for)
        is only allowed on fwmark and all-port services.
      - When omitted, the service's only real server at O(address) is meant, whatever its
        port; if it has none there, a new server gets the service port; if it has several,
        the module fails and asks for the port.
    type: int
  forwarding:
    description:
      - Forwarding method. V(masq) is NAT (C(ipvsadm -m)), V(route) is direct routing (C(-g)),
        V(tunnel) is IP-in-IP or GUE/GRE tunnelling (C(-i)).
      - Omitted keeps the current one; a new server gets V(route).
    type: str
    choices: [masq, route, tunnel]
  weight:
    description:
      - Weight, V(0) to V(65535). V(0) takes the server out of scheduling for new connections
        (drain).
      - Omitted keeps the current weight; a new server gets V(1).
    type: int
  upper_threshold:
    description:
      - Upper connection threshold (C(ipvsadm -x)); V(0) means none.
      - Omitted keeps the current one; a new server gets V(0).
    type: int
  lower_threshold:
    description:
      - Lower connection threshold (C(ipvsadm -y)); must not be above O(upper_threshold).
      - Omitted keeps the current one; a new server gets V(0).
    type: int
  tunnel_type:
    description:
      - Tunnel encapsulation with O(forwarding=tunnel).
      - Omitted keeps the current one of a tunnel server; otherwise V(ipip).
    type: str
    choices: [ipip, gue, gre]
  tunnel_port:
    description:
      - Destination port of the GUE tunnel; required with O(tunnel_type=gue).
      - Omitted keeps the port of a server that is a GUE tunnel already.
    type: int
  tunnel_checksum:
    description:
      - Tunnel checksum for V(gue) and V(gre) tunnels (V(remcsum) needs V(gue)).
      - Omitted keeps the current one while the tunnel type stays; otherwise V(none).
    type: str
    choices: [none, csum, remcsum]
"""

    # ipvs_table's services list, with the real servers nested.
    TABLE = r"""
options:
  services:
    description:
      - The virtual services. Required unless O(state=gathered) or O(src) is given.
      - 'Each entry takes the options of M(haecs.lvs.ipvs_service) plus O(services[].real_servers).
        An option left out of an entry follows O(state): V(merged) keeps the entry''s current
        value, V(replaced) and V(overridden) apply the option''s default.'
    type: list
    elements: dict
    suboptions:
      protocol:
        description:
          - Transport protocol of a service keyed by address and port.
          - Defaults to V(tcp). Not allowed together with O(services[].fwmark).
        type: str
        choices: [tcp, udp, sctp]
      address:
        description:
          - Virtual IP address (IPv4 or IPv6) of the service.
          - Required unless O(services[].fwmark) is given; not allowed together with O(services[].fwmark).
        type: str
      port:
        description:
          - Port of the service, V(0) to V(65535).
          - Required with O(services[].address). V(0) means all ports and is only allowed
            for a persistent service.
        type: int
      fwmark:
        description:
          - Firewall mark (V(1) to V(4294967295)) that keys the service instead of protocol,
            address and port. Mark packets with M(haecs.lvs.fwmark), nftables or iptables.
        type: int
      family:
        description:
          - Address family of a fwmark service. Defaults to V(ipv4).
          - With O(services[].address) it may be given but must match the address.
        type: str
        choices: [ipv4, ipv6]
      scheduler:
        description:
          - Scheduling algorithm.
          - The kernel module (C(ip_vs_<scheduler>)) is loaded before any change.
          - Default V(wlc), as with C(ipvsadm) when the entry is added, and always with O(state=replaced)
            or O(state=overridden).
        type: str
        choices: [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh]
      scheduler_flags:
        description:
          - Flags of the V(sh) and V(mh) schedulers (C(ipvsadm -b)). Each flag needs its scheduler,
            for example V(sh-port) needs O(services[].scheduler=sh). An empty list removes
            them.
          - Default none when the entry is added, and always with O(state=replaced) or O(state=overridden).
        type: list
        elements: str
        choices: [sh-fallback, sh-port, mh-fallback, mh-port]
      one_packet:
        description:
          - One-packet scheduling (C(ipvsadm -o)) for UDP and fwmark services.
          - Default V(false) when the entry is added, and always with O(state=replaced) or
            O(state=overridden).
        type: bool
      persistence_timeout:
        description:
          - Makes the service persistent (C(ipvsadm -p)) for this many seconds (V(1) to V(2678400)).
            V(0) makes it not persistent (and drops the netmask and engine).
          - Default V(0) (not persistent) when the entry is added, and always with O(state=replaced)
            or O(state=overridden).
        type: int
      persistence_netmask:
        description:
          - Persistence granularity of an IPv4 service as a netmask, for example V(255.255.255.0)
            (C(ipvsadm -M)). Needs a persistent service.
          - Default V(255.255.255.255) (per client address) when the entry is added, and always
            with O(state=replaced) or O(state=overridden).
        type: str
      persistence_prefix_length:
        description:
          - Persistence granularity of an IPv6 service as a prefix length (V(1) to V(128)).
            Needs a persistent service.
          - Default V(128) when the entry is added, and always with O(state=replaced) or O(state=overridden).
        type: int
      persistence_engine:
        description:
          - Persistence engine (C(ipvsadm --pe)); V(sip) needs a persistent UDP service. V(none)
            removes it.
          - Default none when the entry is added, and always with O(state=replaced) or O(state=overridden).
        type: str
        choices: [sip, none]
      real_servers:
        description:
          - The real servers of the service. With O(state=merged) and O(state=deleted), omitting
            it means "not about real servers".
        type: list
        elements: dict
        suboptions:
          address:
            description:
              - IPv4 or IPv6 address of the real server.
              - Its family must match the service unless O(services[].real_servers[].forwarding=tunnel).
            type: str
            required: true
          port:
            description:
              - Port of the real server.
              - Only O(services[].real_servers[].forwarding=masq) can map to another port;
                V(0) (the port the client asked for) is only allowed on fwmark and all-port
                services.
              - Default the service port when the entry is added, and always with O(state=replaced)
                or O(state=overridden).
              - With O(state=merged), omitted names the service's only real server at that
                address, whatever its port.
            type: int
          forwarding:
            description:
              - Forwarding method. V(masq) is NAT (C(ipvsadm -m)), V(route) is direct routing
                (C(-g)), V(tunnel) is IP-in-IP or GUE/GRE tunnelling (C(-i)).
              - Default V(route), as with C(ipvsadm) when the entry is added, and always with
                O(state=replaced) or O(state=overridden).
            type: str
            choices: [masq, route, tunnel]
          weight:
            description:
              - Weight, V(0) to V(65535). V(0) takes the server out of scheduling for new
                connections (drain).
              - Default V(1) when the entry is added, and always with O(state=replaced) or
                O(state=overridden).
            type: int
          upper_threshold:
            description:
              - Upper connection threshold (C(ipvsadm -x)); V(0) means none.
              - Default V(0) when the entry is added, and always with O(state=replaced) or
                O(state=overridden).
            type: int
          lower_threshold:
            description:
              - Lower connection threshold (C(ipvsadm -y)); must not be above O(services[].real_servers[].upper_threshold).
              - Default V(0) when the entry is added, and always with O(state=replaced) or
                O(state=overridden).
            type: int
          tunnel_type:
            description:
              - Tunnel encapsulation with O(services[].real_servers[].forwarding=tunnel).
              - Default V(ipip) when the entry is added, and always with O(state=replaced)
                or O(state=overridden).
            type: str
            choices: [ipip, gue, gre]
          tunnel_port:
            description:
              - Destination port of the GUE tunnel; required with O(services[].real_servers[].tunnel_type=gue).
            type: int
          tunnel_checksum:
            description:
              - Tunnel checksum for V(gue) and V(gre) tunnels (V(remcsum) needs V(gue)).
              - Default V(none) when the entry is added, and always with O(state=replaced)
                or O(state=overridden).
            type: str
            choices: [none, csum, remcsum]
"""
