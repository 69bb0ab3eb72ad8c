"""Hypothesis strategies for module options (what a task may write).

Used by the host codec property test (tests/unit) and the kernel property
test (tests/kernel_engine): one service with up to three real servers, every
option drawn over its whole range with the boundaries weighted in
(full-length masks and prefixes, port 0 where allowed, weight 0 and 65535,
thresholds 0 and 2**32-1, every scheduler flag combination) and addresses in
several textual forms (upper case, exploded IPv6, IPv4-mapped, spaces).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List

from hypothesis import strategies as st

Params = Dict[str, Any]

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
MAX_U32 = 2**32 - 1


def address_text(draw: Any, address: str) -> str:
    """One of the textual forms of `address` that mean the same address."""
    ip = ipaddress.ip_address(address)
    forms = [ip.compressed, " %s " % ip.compressed]
    if ip.version == 6:
        forms += [ip.exploded, ip.exploded.upper(), ip.compressed.upper()]
        if ip.ipv4_mapped is not None:
            forms.append("::ffff:%s" % ip.ipv4_mapped)
    return str(draw(st.sampled_from(forms)))


def _v4(index: int) -> str:
    return "198.51.100.%d" % (10 + index)


def _v6(draw: Any, index: int) -> str:
    # (IPv4-mapped addresses are refused by the kernel for real servers.)
    return "2001:db8:0:1::%x" % (0xA0 + int(draw(st.integers(0, 15))) * 16 + index)


def _u32(draw: Any) -> int:
    return int(draw(st.one_of(st.sampled_from([0, 1, MAX_U32]), st.integers(0, MAX_U32))))


@st.composite
def service_options(draw: Any) -> Params:
    """Options of one valid service, with `real_servers`."""
    family = draw(st.sampled_from(["ipv4", "ipv6"]))
    params: Params = {}
    fwmark = draw(st.booleans())
    if fwmark:
        # ipvsadm -Sn prints marks above 2**31-1 as negative numbers (%d):
        # marks are drawn up to 2**31-1 so its lines compare; see the kernel test.
        params.update(fwmark=draw(st.sampled_from([1, 2**31 - 1]) | st.integers(1, 2**31 - 1)))
        params["family"] = family
        protocol = ""
    else:
        protocol = draw(st.sampled_from(["tcp", "udp", "sctp"]))
        address = "192.0.2.10" if family == "ipv4" else "2001:db8::10"
        params.update(protocol=protocol, address=address_text(draw, address))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    params["scheduler"] = scheduler
    if scheduler in ("sh", "mh"):
        flags = [
            f for f in ("%s-fallback" % scheduler, "%s-port" % scheduler) if draw(st.booleans())
        ]
        params["scheduler_flags"] = draw(st.permutations(flags))
    persistent = draw(st.booleans())
    if persistent:
        params["persistence_timeout"] = draw(
            st.sampled_from([1, 2678400]) | st.integers(1, 2678400)
        )
        top = 128 if family == "ipv6" else 32
        prefix = draw(st.one_of(st.none(), st.sampled_from([1, top]), st.integers(1, top)))
        if prefix is not None:
            if family == "ipv6":
                params["persistence_prefix_length"] = prefix
            else:
                params["persistence_netmask"] = str(
                    ipaddress.IPv4Network("0.0.0.0/%d" % prefix).netmask
                )
        if protocol == "udp" and draw(st.booleans()):
            params["persistence_engine"] = "sip"
    if not fwmark:
        low = 0 if persistent else 1
        params["port"] = draw(st.sampled_from([low, 65535]) | st.integers(low, 65535))
    if protocol in ("udp", "") and draw(st.booleans()):
        params["one_packet"] = True
    port_zero_allowed = fwmark or params.get("port") == 0
    servers: List[Params] = []
    for index in range(draw(st.integers(0, 3))):
        servers.append(
            _server_options(draw, index, family, params.get("port", 0), port_zero_allowed)
        )
    params["real_servers"] = servers
    return params


def _server_options(
    draw: Any, index: int, family: str, service_port: int, port_zero_allowed: bool
) -> Params:
    forwarding = draw(st.sampled_from(["masq", "route", "tunnel"]))
    server_family = family
    if forwarding == "tunnel" and draw(st.booleans()):
        server_family = "ipv6" if family == "ipv4" else "ipv4"
    address = _v4(index) if server_family == "ipv4" else _v6(draw, index)
    server: Params = {"address": address_text(draw, address), "forwarding": forwarding}
    if forwarding == "masq" or port_zero_allowed:
        low = 0 if port_zero_allowed else 1
        server["port"] = draw(st.sampled_from([low, 65535]) | st.integers(low, 65535))
    elif draw(st.booleans()):
        server["port"] = service_port
    server["weight"] = draw(st.sampled_from([0, 1, 65535]) | st.integers(0, 65535))
    upper = _u32(draw)
    server["upper_threshold"] = upper
    server["lower_threshold"] = draw(st.sampled_from([0, upper]) | st.integers(0, upper))
    if forwarding == "tunnel":
        tunnel_type = draw(st.sampled_from(["ipip", "gue", "gre"]))
        server["tunnel_type"] = tunnel_type
        if tunnel_type == "gue":
            server["tunnel_port"] = draw(st.sampled_from([1, 65535]) | st.integers(1, 65535))
            server["tunnel_checksum"] = draw(st.sampled_from(["none", "csum", "remcsum"]))
        elif tunnel_type == "gre":
            server["tunnel_checksum"] = draw(st.sampled_from(["none", "csum"]))
    return server
