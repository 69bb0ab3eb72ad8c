"""The options of a virtual service and of a real server, written once.

The source of plugins/doc_fragments/ipvs_options.py: `make fragments` writes
that file from the tables here (ansible-test wants a doc fragment's text as
string literals, so the fragment cannot build itself), and a unit test fails
when it is out of date.

ipvs_service and ipvs_info take the service options at the top level,
ipvs_real_server takes the key under virtual_service and the real-server
options at the top level, and ipvs_table takes both nested in its
``services`` list.  Each option is described here once; each place adds
what an omitted option means there (keep the current value in the
single-entry modules; the default with ipvs_table's replaced/overridden).
``{o}`` in a text is the option's path prefix in that place, so O()
references resolve in every module.

    python tests/docgen/ipvs_options.py > plugins/doc_fragments/ipvs_options.py
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, NamedTuple, Optional

import yaml


class Option(NamedTuple):
    spec: Dict[str, Any]  # type, choices, elements, required: as in the argument spec
    about: List[str]  # what the option is, in every place
    new: Optional[str] = None  # the value an entry gets when it is added
    omitted: Optional[str] = None  # single-entry modules: what leaving it out means
    table: Optional[str] = None  # ipvs_table: an extra sentence


PROTOCOLS = ["tcp", "udp", "sctp"]
SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]

SERVICE_KEY: Dict[str, Option] = {
    "protocol": Option(
        {"type": "str", "choices": PROTOCOLS},
        [
            "Transport protocol of a service keyed by address and port.",
            "Defaults to V(tcp). Not allowed together with O({o}fwmark).",
        ],
    ),
    "address": Option(
        {"type": "str"},
        [
            "Virtual IP address (IPv4 or IPv6) of the service.",
            "Required unless O({o}fwmark) is given; not allowed together with O({o}fwmark).",
        ],
    ),
    "port": Option(
        {"type": "int"},
        [
            "Port of the service, V(0) to V(65535).",
            "Required with O({o}address). V(0) means all ports and is only allowed for"
            " a persistent service.",
        ],
    ),
    "fwmark": Option(
        {"type": "int"},
        [
            "Firewall mark (V(1) to V(4294967295)) that keys the service instead of"
            " protocol, address and port. Mark packets with M(haecs.lvs.fwmark),"
            " nftables or iptables.",
        ],
    ),
    "family": Option(
        {"type": "str", "choices": ["ipv4", "ipv6"]},
        [
            "Address family of a fwmark service. Defaults to V(ipv4).",
            "With O({o}address) it may be given but must match the address.",
        ],
    ),
}

SERVICE: Dict[str, Option] = {
    "scheduler": Option(
        {"type": "str", "choices": SCHEDULERS},
        [
            "Scheduling algorithm.",
            "The kernel module (C(ip_vs_<scheduler>)) is loaded before any change.",
        ],
        new="V(wlc), as with C(ipvsadm)",
        omitted="Omitted keeps the current one; a new service gets V(wlc), as with C(ipvsadm).",
    ),
    "scheduler_flags": Option(
        {
            "type": "list",
            "elements": "str",
            "choices": ["sh-fallback", "sh-port", "mh-fallback", "mh-port"],
        },
        [
            "Flags of the V(sh) and V(mh) schedulers (C(ipvsadm -b)). Each flag needs its"
            " scheduler, for example V(sh-port) needs O({o}scheduler=sh). An empty list"
            " removes them.",
        ],
        new="none",
        omitted="Omitted keeps the current flags while the scheduler stays (a new scheduler"
        " drops the old one's flags); a new service gets none.",
    ),
    "one_packet": Option(
        {"type": "bool"},
        ["One-packet scheduling (C(ipvsadm -o)) for UDP and fwmark services."],
        new="V(false)",
        omitted="Omitted keeps the current setting; a new service gets V(false).",
    ),
    "persistence_timeout": Option(
        {"type": "int"},
        [
            "Makes the service persistent (C(ipvsadm -p)) for this many seconds"
            " (V(1) to V(2678400)). V(0) makes it not persistent (and drops the"
            " netmask and engine).",
        ],
        new="V(0) (not persistent)",
        omitted="Omitted keeps the current persistence; a new service is not persistent.",
    ),
    "persistence_netmask": Option(
        {"type": "str"},
        [
            "Persistence granularity of an IPv4 service as a netmask, for example"
            " V(255.255.255.0) (C(ipvsadm -M)). Needs a persistent service.",
        ],
        new="V(255.255.255.255) (per client address)",
        omitted="Omitted keeps the current one; a new persistent service gets"
        " V(255.255.255.255) (per client address).",
    ),
    "persistence_prefix_length": Option(
        {"type": "int"},
        [
            "Persistence granularity of an IPv6 service as a prefix length (V(1) to"
            " V(128)). Needs a persistent service.",
        ],
        new="V(128)",
        omitted="Omitted keeps the current one; a new persistent service gets V(128).",
    ),
    "persistence_engine": Option(
        {"type": "str", "choices": ["sip", "none"]},
        [
            "Persistence engine (C(ipvsadm --pe)); V(sip) needs a persistent UDP"
            " service. V(none) removes it.",
        ],
        new="none",
        omitted="Omitted keeps the current engine; a new service gets none.",
    ),
}

REAL_SERVER: Dict[str, Option] = {
    "address": Option(
        {"type": "str", "required": True},
        [
            "IPv4 or IPv6 address of the real server.",
            "Its family must match the service unless O({o}forwarding=tunnel).",
        ],
    ),
    "port": Option(
        {"type": "int"},
        [
            "Port of the real server.",
            "Only O({o}forwarding=masq) can map to another port; V(0) (the port the"
            " client asked for) is only allowed on fwmark and all-port services.",
        ],
        new="the service port",
        omitted="When omitted, the service's only real server at O({o}address) is meant,"
        " whatever its port; if it has none there, a new server gets the service"
        " port; if it has several, the module fails and asks for the port.",
        table="With O(state=merged), omitted names the service's only real server at that"
        " address, whatever its port.",
    ),
    "forwarding": Option(
        {"type": "str", "choices": ["masq", "route", "tunnel"]},
        [
            "Forwarding method. V(masq) is NAT (C(ipvsadm -m)), V(route) is direct"
            " routing (C(-g)), V(tunnel) is IP-in-IP or GUE/GRE tunnelling (C(-i)).",
        ],
        new="V(route), as with C(ipvsadm)",
        omitted="Omitted keeps the current one; a new server gets V(route).",
    ),
    "weight": Option(
        {"type": "int"},
        [
            "Weight, V(0) to V(65535). V(0) takes the server out of scheduling for new"
            " connections (drain).",
        ],
        new="V(1)",
        omitted="Omitted keeps the current weight; a new server gets V(1).",
    ),
    "upper_threshold": Option(
        {"type": "int"},
        ["Upper connection threshold (C(ipvsadm -x)); V(0) means none."],
        new="V(0)",
        omitted="Omitted keeps the current one; a new server gets V(0).",
    ),
    "lower_threshold": Option(
        {"type": "int"},
        [
            "Lower connection threshold (C(ipvsadm -y)); must not be above O({o}upper_threshold).",
        ],
        new="V(0)",
        omitted="Omitted keeps the current one; a new server gets V(0).",
    ),
    "tunnel_type": Option(
        {"type": "str", "choices": ["ipip", "gue", "gre"]},
        ["Tunnel encapsulation with O({o}forwarding=tunnel)."],
        new="V(ipip)",
        omitted="Omitted keeps the current one of a tunnel server; otherwise V(ipip).",
    ),
    "tunnel_port": Option(
        {"type": "int"},
        ["Destination port of the GUE tunnel; required with O({o}tunnel_type=gue)."],
        omitted="Omitted keeps the port of a server that is a GUE tunnel already.",
    ),
    "tunnel_checksum": Option(
        {"type": "str", "choices": ["none", "csum", "remcsum"]},
        ["Tunnel checksum for V(gue) and V(gre) tunnels (V(remcsum) needs V(gue))."],
        new="V(none)",
        omitted="Omitted keeps the current one while the tunnel type stays; otherwise V(none).",
    ),
}


def _described(options: Dict[str, Option], prefix: str, place: str) -> Dict[str, Any]:
    """The options as documentation, for PLACE: 'key', 'entry' or 'table'."""
    documented = {}
    for name, option in options.items():
        lines = [text.replace("{o}", prefix) for text in option.about]
        if place == "entry" and option.omitted:
            lines.append(option.omitted.replace("{o}", prefix))
        if place == "table":
            if option.new is not None:
                lines.append(
                    "Default %s when the entry is added, and always with"
                    " O(state=replaced) or O(state=overridden)." % option.new
                )
            if option.table:
                lines.append(option.table)
        spec = {
            key: _Flow(value) if key == "choices" else value for key, value in option.spec.items()
        }
        documented[name] = dict(description=lines, **spec)
    return documented


class _Flow(list):  # type: ignore[type-arg]
    """A list written on one line: [tcp, udp, sctp]."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indented sequences, as the modules write them


_Dumper.add_representer(
    _Flow,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)


def _fragment(options: Dict[str, Any]) -> str:
    return yaml.dump(
        {"options": options}, Dumper=_Dumper, sort_keys=False, width=88, default_flow_style=False
    )


_SERVICES_PREFIX = "services[]."
_REAL_SERVERS_PREFIX = "services[].real_servers[]."


def _table_services() -> Dict[str, Any]:
    suboptions = _described(SERVICE_KEY, _SERVICES_PREFIX, "key")
    suboptions.update(_described(SERVICE, _SERVICES_PREFIX, "table"))
    suboptions["real_servers"] = {
        "description": [
            "The real servers of the service. With O(state=merged) and O(state=deleted),"
            ' omitting it means "not about real servers".',
        ],
        "type": "list",
        "elements": "dict",
        "suboptions": _described(REAL_SERVER, _REAL_SERVERS_PREFIX, "table"),
    }
    return {
        "services": {
            "description": [
                "The virtual services. Required unless O(state=gathered) or O(src) is given.",
                "Each entry takes the options of M(haecs.lvs.ipvs_service) plus"
                " O(services[].real_servers). An option left out of an entry follows"
                " O(state): V(merged) keeps the entry's current value, V(replaced) and"
                " V(overridden) apply the option's default.",
            ],
            "type": "list",
            "elements": "dict",
            "suboptions": suboptions,
        }
    }


def _virtual_service() -> Dict[str, Any]:
    return {
        "virtual_service": {
            "description": [
                "The virtual service, named by its key (O(virtual_service.address) and"
                " O(virtual_service.port), or O(virtual_service.fwmark)).",
                "The service must exist; create it with M(haecs.lvs.ipvs_service).",
            ],
            "type": "dict",
            "required": True,
            "suboptions": _described(SERVICE_KEY, "virtual_service.", "key"),
        }
    }


HEADER = '''\
# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tests/docgen/ipvs_options.py (make fragments): edit the tables there.
"""The options of a virtual service and of a real server (written once, in tests/docgen)."""

from __future__ import annotations


class ModuleDocFragment:
'''

FRAGMENTS = (
    (
        "The service key at the top level (ipvs_info).",
        "DOCUMENTATION",
        lambda: _described(SERVICE_KEY, "", "key"),
    ),
    (
        "The service options at the top level (ipvs_service, with DOCUMENTATION for the key).",
        "SERVICE",
        lambda: _described(SERVICE, "", "entry"),
    ),
    (
        "virtual_service and the real-server options at the top level (ipvs_real_server).",
        "REAL_SERVER",
        lambda: dict(_virtual_service(), **_described(REAL_SERVER, "", "entry")),
    ),
    ("ipvs_table's services list, with the real servers nested.", "TABLE", _table_services),
)


def render() -> str:
    """The text of plugins/doc_fragments/ipvs_options.py."""
    parts = [HEADER]
    for number, (comment, name, options) in enumerate(FRAGMENTS):
        if number:
            parts.append("\n")
        parts.append('    # %s\n    %s = r"""\n%s"""\n' % (comment, name, _fragment(options())))
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
