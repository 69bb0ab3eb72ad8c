# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks for IPVS fwmark services, kept in one nftables table.

The collection owns one table (``inet haecs`` by default) with a
``prerouting`` chain (type filter, hook prerouting, priority mangle) and,
for clients on the director itself, an ``output`` chain (type route, hook
output, priority mangle).  Every rule it writes has the one shape

    ip daddr 10.0.0.1 tcp dport { 80, 443 } meta mark set 42 comment "haecs:42:tcp:10.0.0.1"

and carries its identity in the comment (``haecs:`` then the rule's name,
or ``<mark>:<protocol>:<destination>``), so the rules can be told apart from
anything else in the table and a changed rule is replaced, not duplicated.

Three layers, no Ansible import:

* ``parse_*`` turn module options into checked `MarkRule` objects; errors
  name the field (``rules[1].ports[0]: must be a port 1-65535 or a range a-b``).
* `plan` is pure: current table (parsed from ``nft -j list table``) and
  desired state in, one list of nft JSON commands plus before/after text out.
* `Nft` runs ``nft``: reads the table and applies a plan as ONE batch
  (``nft -j -f -``), so the kernel commits all of it or nothing; with
  ``check=True`` the batch is only checked by the kernel (``nft -c``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .ipvs.errors import HaecsError
from .ipvs.params import ValidationError

COMMENT_PREFIX = "haecs:"
DEFAULT_TABLE = "inet haecs"
TABLE_FAMILIES = ("inet", "ip", "ip6")
PROTOCOLS = ("tcp", "udp", "sctp")
STATES = ("present", "absent")
MAX_MARK = 2**32 - 1
# nftables limits a comment to 128 bytes (NFT_USERDATA_MAXLEN is larger).
MAX_COMMENT = 128
RULE_FIELDS = ("mark", "destination", "protocol", "ports", "name")

PRIORITY_NAMES = {
    -300: "raw",
    -150: "mangle",
    -100: "dstnat",
    0: "filter",
    50: "security",
    100: "srcnat",
}

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
PortRanges = Tuple[Tuple[int, int], ...]
Json = Dict[str, Any]


class PlanError(HaecsError, RuntimeError):
    """The desired state cannot be reached without a decision the user has to make."""


class NftError(HaecsError, RuntimeError):
    """nft is unusable, or the kernel refused the batch (then nothing changed)."""


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class TableName:
    family: str
    name: str

    def __str__(self) -> str:
        return "%s %s" % (self.family, self.name)


@dataclass(frozen=True)
class ChainSpec:
    """A chain as the collection wants it (base chains only)."""

    name: str
    type: str
    hook: str
    prio: int
    policy: str = "accept"

    def text(self) -> str:
        prio = PRIORITY_NAMES.get(self.prio, str(self.prio))
        return "type %s hook %s priority %s; policy %s;" % (self.type, self.hook, prio, self.policy)


PREROUTING = ChainSpec("prerouting", "filter", "prerouting", -150)
OUTPUT = ChainSpec("output", "route", "output", -150)


@dataclass(frozen=True)
class MarkRule:
    """One marking rule: traffic to destination/protocol/ports gets mark."""

    mark: int
    destination: str  # canonical: "10.0.0.1", "10.0.0.0/24", "2001:db8::/64"
    protocol: str
    ports: PortRanges  # sorted, overlapping and adjacent ranges merged (as nft stores them)
    name: Optional[str] = None

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.destination)

    @property
    def l3(self) -> str:
        """nft payload protocol of the destination: ip or ip6."""
        return "ip6" if self.network.version == 6 else "ip"

    @property
    def identity(self) -> str:
        if self.name:
            return self.name
        return "%d:%s:%s" % (self.mark, self.protocol, self.destination)

    @property
    def comment(self) -> str:
        return COMMENT_PREFIX + self.identity

    def match(self) -> Tuple[int, str, str, PortRanges]:
        """What the kernel sees; equal matches mean nothing to change."""
        return (self.mark, self.destination, self.protocol, self.ports)

    def ports_text(self) -> str:
        items = [str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in self.ports]
        return items[0] if len(items) == 1 else "{ %s }" % ", ".join(items)

    def text(self) -> str:
        return '%s daddr %s %s dport %s meta mark set %d comment "%s"' % (
            self.l3,
            self.destination,
            self.protocol,
            self.ports_text(),
            self.mark,
            self.comment,
        )

    def expr(self) -> List[Json]:
        net = self.network
        daddr: Any
        if net.prefixlen == net.max_prefixlen:
            daddr = str(net.network_address)
        else:
            daddr = {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
        items: List[Any] = [lo if lo == hi else {"range": [lo, hi]} for lo, hi in self.ports]
        dport: Any = items[0] if len(items) == 1 else {"set": items}
        return [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": self.l3, "field": "daddr"}},
                    "right": daddr,
                }
            },
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": self.protocol, "field": "dport"}},
                    "right": dport,
                }
            },
            {"mangle": {"key": {"meta": {"key": "mark"}}, "value": self.mark}},
        ]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "mark": self.mark,
            "destination": self.destination,
            "protocol": self.protocol,
            "ports": [str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in self.ports],
            "comment": self.comment,
        }


@dataclass(frozen=True)
class CurrentChain:
    name: str
    handle: int
    type: Optional[str] = None
    hook: Optional[str] = None
    prio: Optional[int] = None
    policy: Optional[str] = None

    def matches(self, spec: ChainSpec) -> bool:
        return (self.type, self.hook, self.prio, self.policy or "accept") == (
            spec.type,
            spec.hook,
            spec.prio,
            spec.policy,
        )

    def text(self) -> str:
        if self.hook is None:
            return ""
        prio = PRIORITY_NAMES.get(self.prio, str(self.prio)) if self.prio is not None else "?"
        return "type %s hook %s priority %s; policy %s;" % (
            self.type,
            self.hook,
            prio,
            self.policy or "accept",
        )


@dataclass(frozen=True)
class CurrentRule:
    chain: str
    handle: int
    comment: Optional[str]
    rule: Optional[MarkRule]  # None: not a shape this collection writes
    text: str  # nft text of the rule (without comment for unparsed rules: see Nft.read_table)

    @property
    def identity(self) -> Optional[str]:
        if self.comment and self.comment.startswith(COMMENT_PREFIX):
            return self.comment[len(COMMENT_PREFIX) :]
        return None


@dataclass
class TableState:
    """The table as read from nft (``exists=False``: there is no such table)."""

    table: TableName
    exists: bool = False
    chains: List[CurrentChain] = field(default_factory=list)
    rules: List[CurrentRule] = field(default_factory=list)

    def chain(self, name: str) -> Optional[CurrentChain]:
        for chain in self.chains:
            if chain.name == name:
                return chain
        return None

    def rules_in(self, chain: str) -> List[CurrentRule]:
        return [rule for rule in self.rules if rule.chain == chain]

    def managed_rules(self) -> List[MarkRule]:
        """The collection's own rules (recognised shape and comment), once each."""
        seen: Dict[str, MarkRule] = {}
        for current in self.rules:
            if (
                current.identity is not None
                and current.rule is not None
                and current.rule.comment == current.comment
            ):
                seen.setdefault(current.identity, current.rule)
        return list(seen.values())


@dataclass(frozen=True)
class Desired:
    table: TableName
    state: str = "present"
    rules: Tuple[MarkRule, ...] = ()
    remove: Tuple[str, ...] = ()  # identities, for state=absent
    output: bool = False
    purge: bool = False


@dataclass
class Plan:
    commands: List[Json]
    actions: List[str]
    before: str
    after: str
    after_rules: List[MarkRule]

    @property
    def changed(self) -> bool:
        return bool(self.commands)

    def batch(self) -> Json:
        return {"nftables": self.commands}


# ---------------------------------------------------------------- validation


def _path(prefix: str, name: str) -> str:
    return "%s.%s" % (prefix, name) if prefix else name


def parse_table(value: Any, field_name: str = "table") -> TableName:
    """``inet haecs`` (family and name) or just a name (family inet)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field_name, "must be a string 'FAMILY NAME' such as 'inet haecs'")
    parts = value.split()
    if len(parts) == 1:
        parts = ["inet", parts[0]]
    if len(parts) != 2:
        raise ValidationError(
            field_name, "must be 'FAMILY NAME' such as 'inet haecs', got %r" % value
        )
    family, name = parts
    if family not in TABLE_FAMILIES:
        raise ValidationError(
            field_name, "family must be one of %s, got %r" % (", ".join(TABLE_FAMILIES), family)
        )
    if not _TABLE_NAME_RE.match(name):
        raise ValidationError(
            field_name, "name must be letters, digits, _ . - (at most 64), got %r" % name
        )
    return TableName(family, name)


def parse_mark(value: Any, field_name: str) -> int:
    if isinstance(value, str) and value.strip():
        text = value.strip().lower()
        try:
            value = int(text, 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            raise ValidationError(
                field_name, "must be an integer from 1 to %d, got %r" % (MAX_MARK, value)
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            field_name, "must be an integer from 1 to %d, got %r" % (MAX_MARK, value)
        )
    if not 1 <= value <= MAX_MARK:
        raise ValidationError(
            field_name, "must be an integer from 1 to %d, got %d" % (MAX_MARK, value)
        )
    return value


def parse_destination(value: Any, field_name: str, table_family: str = "inet") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            field_name, "must be an IPv4 or IPv6 address or CIDR network, got %r" % (value,)
        )
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValidationError(
            field_name, "must be an IPv4 or IPv6 address or CIDR network, got %r" % (value,)
        ) from None
    if "/" in text and net.network_address != ipaddress.ip_interface(text).ip:
        raise ValidationError(
            field_name, "%s has host bits set; did you mean %s?" % (text, net.compressed)
        )
    if table_family == "ip" and net.version == 6:
        raise ValidationError(field_name, "is IPv6 but the table family is ip (use inet or ip6)")
    if table_family == "ip6" and net.version == 4:
        raise ValidationError(field_name, "is IPv4 but the table family is ip6 (use inet or ip)")
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return net.compressed


def merge_ranges(ranges: Sequence[Tuple[int, int]]) -> PortRanges:
    """Sort, then merge overlapping and adjacent ranges (as nftables does)."""
    merged: List[List[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def _port(value: Any) -> Optional[Tuple[int, int]]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, value) if 1 <= value <= 65535 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        number = int(text)
        return (number, number) if 1 <= number <= 65535 else None
    found = _RANGE_RE.match(text)
    if not found:
        return None
    lo, hi = int(found.group(1)), int(found.group(2))
    if not 1 <= lo <= hi <= 65535:
        return None
    return (lo, hi)


def parse_ports(value: Any, field_name: str) -> PortRanges:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(
            field_name, "must be a list of ports and ranges such as [80, 443, '8000-8080']"
        )
    if not value:
        raise ValidationError(field_name, "must list at least one port")
    ranges = []
    for index, item in enumerate(value):
        parsed = _port(item)
        if parsed is None:
            raise ValidationError(
                "%s[%d]" % (field_name, index),
                "must be a port 1-65535 or a range a-b, got %r" % (item,),
            )
        ranges.append(parsed)
    return merge_ranges(ranges)


def parse_name(value: Any, field_name: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValidationError(
            field_name,
            "must start with a letter, then letters, digits, _ . - (at most 64), got %r" % (value,),
        )
    return value


def _check_unknown(params: Mapping[str, Any], prefix: str) -> None:
    for key in params:
        if key not in RULE_FIELDS:
            raise ValidationError(
                _path(prefix, str(key)), "unknown option; allowed: %s" % ", ".join(RULE_FIELDS)
            )


def parse_rule(params: Any, prefix: str, table_family: str = "inet") -> MarkRule:
    """One rule for state=present: every field checked, ports normalised."""
    if not isinstance(params, Mapping):
        raise ValidationError(
            prefix, "must be a mapping with mark, destination, protocol and ports"
        )
    _check_unknown(params, prefix)
    for required in ("mark", "destination", "ports"):
        if params.get(required) is None:
            raise ValidationError(_path(prefix, required), "is required")
    protocol = params.get("protocol")
    if protocol is None:
        protocol = "tcp"
    if protocol not in PROTOCOLS:
        raise ValidationError(
            _path(prefix, "protocol"),
            "must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol),
        )
    rule = MarkRule(
        mark=parse_mark(params["mark"], _path(prefix, "mark")),
        destination=parse_destination(
            params["destination"], _path(prefix, "destination"), table_family
        ),
        protocol=str(protocol),
        ports=parse_ports(params["ports"], _path(prefix, "ports")),
        name=parse_name(params.get("name"), _path(prefix, "name")),
    )
    if (
        len(rule.comment.encode()) > MAX_COMMENT
    ):  # pragma: no cover - names are at most 64 characters
        raise ValidationError(
            prefix, "identity %r is too long for an nftables comment" % rule.comment
        )
    return rule


def parse_identity(params: Any, prefix: str, table_family: str = "inet") -> str:
    """The identity of a rule to remove (state=absent): name, or mark+protocol+destination.

    Every field given is checked, even those the identity does not need.
    """
    if not isinstance(params, Mapping):
        raise ValidationError(prefix, "must be a mapping with name, or mark and destination")
    _check_unknown(params, prefix)
    mark = destination = None
    if params.get("mark") is not None:
        mark = parse_mark(params["mark"], _path(prefix, "mark"))
    if params.get("destination") is not None:
        destination = parse_destination(
            params["destination"], _path(prefix, "destination"), table_family
        )
    protocol = params.get("protocol")
    if protocol is None:
        protocol = "tcp"
    if protocol not in PROTOCOLS:
        raise ValidationError(
            _path(prefix, "protocol"),
            "must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol),
        )
    if params.get("ports") is not None:
        parse_ports(params["ports"], _path(prefix, "ports"))
    name = parse_name(params.get("name"), _path(prefix, "name"))
    if name is not None:
        return name
    if mark is None:
        raise ValidationError(_path(prefix, "mark"), "is required (or give name)")
    if destination is None:
        raise ValidationError(_path(prefix, "destination"), "is required (or give name)")
    return "%d:%s:%s" % (mark, protocol, destination)


def _overlap(a: MarkRule, b: MarkRule) -> Optional[str]:
    """A port both rules match (same protocol, overlapping destinations), if any."""
    if a.protocol != b.protocol:
        return None
    net_a, net_b = a.network, b.network
    if net_a.version != net_b.version or not net_a.overlaps(net_b):
        return None
    for lo_a, hi_a in a.ports:
        for lo_b, hi_b in b.ports:
            if lo_a <= hi_b and lo_b <= hi_a:
                return str(max(lo_a, lo_b))
    return None


def parse_desired(
    rules: Any,
    state: str = "present",
    table: Any = DEFAULT_TABLE,
    output: bool = False,
    purge: bool = False,
) -> Desired:
    """Check every option and return the desired state (ValidationError on the first problem)."""
    table_name = parse_table(table)
    if state not in STATES:
        raise ValidationError("state", "must be present or absent, got %r" % (state,))
    if rules is None:
        rules = []
    if not isinstance(rules, (list, tuple)):
        raise ValidationError("rules", "must be a list of rules")
    if state == "absent":
        if purge and rules:
            raise ValidationError(
                "purge",
                "with state=absent removes the whole table %s; do not list rules with it"
                % table_name,
            )
        identities: List[str] = []
        for index, params in enumerate(rules):
            identity = parse_identity(params, "rules[%d]" % index, table_name.family)
            if identity not in identities:
                identities.append(identity)
        return Desired(
            table=table_name, state=state, remove=tuple(identities), output=output, purge=purge
        )
    parsed: List[MarkRule] = []
    for index, params in enumerate(rules):
        rule = parse_rule(params, "rules[%d]" % index, table_name.family)
        for other_index, other in enumerate(parsed):
            if other.identity == rule.identity:
                raise ValidationError(
                    "rules[%d]" % index,
                    "has the same identity as rules[%d] (%s); give one a name"
                    % (other_index, rule.comment),
                )
            port = _overlap(other, rule)
            if port is not None and other.mark != rule.mark:
                raise ValidationError(
                    "rules[%d]" % index,
                    "overlaps rules[%d] (%s %s port %s) with a different mark (%d, %d): only one mark can win"
                    % (other_index, rule.protocol, rule.destination, port, other.mark, rule.mark),
                )
        parsed.append(rule)
    return Desired(table=table_name, state=state, rules=tuple(parsed), output=output, purge=purge)


# ---------------------------------------------------------------- reading nft JSON


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def _payload(left: Any) -> Optional[Tuple[str, str]]:
    if isinstance(left, Mapping) and isinstance(left.get("payload"), Mapping):
        payload = left["payload"]
        protocol, field_name = payload.get("protocol"), payload.get("field")
        if isinstance(protocol, str) and isinstance(field_name, str):
            return protocol, field_name
    return None


def _match(statement: Any) -> Optional[Tuple[Tuple[str, str], Any]]:
    if not isinstance(statement, Mapping) or set(statement) != {"match"}:
        return None
    match = statement["match"]
    if not isinstance(match, Mapping) or match.get("op", "==") not in ("==", "in"):
        return None
    payload = _payload(match.get("left"))
    if payload is None:
        return None
    return payload, match.get("right")


def _address(right: Any) -> Optional[str]:
    try:
        if isinstance(right, str):
            return str(ipaddress.ip_address(right))
        if isinstance(right, Mapping) and isinstance(right.get("prefix"), Mapping):
            prefix = right["prefix"]
            net = ipaddress.ip_network("%s/%s" % (prefix.get("addr"), prefix.get("len")))
            if net.prefixlen == net.max_prefixlen:
                return str(net.network_address)
            return net.compressed
    except ValueError:
        return None
    return None


def _port_item(item: Any) -> Optional[Tuple[int, int]]:
    number = _int(item)
    if number is not None:
        return (number, number)
    if (
        isinstance(item, Mapping)
        and isinstance(item.get("range"), list)
        and len(item["range"]) == 2
    ):
        lo, hi = _int(item["range"][0]), _int(item["range"][1])
        if lo is not None and hi is not None:
            return (lo, hi)
    return None


def _ports(right: Any) -> Optional[PortRanges]:
    items = right["set"] if isinstance(right, Mapping) and "set" in right else [right]
    if not isinstance(items, list) or not items:
        return None
    ranges = []
    for item in items:
        parsed = _port_item(item)
        if parsed is None:
            return None
        ranges.append(parsed)
    return merge_ranges(ranges)


def _mark_value(statement: Any) -> Optional[int]:
    if not isinstance(statement, Mapping) or set(statement) != {"mangle"}:
        return None
    mangle = statement["mangle"]
    if not isinstance(mangle, Mapping):
        return None
    key = mangle.get("key", mangle.get("left"))  # "left" in nftables 0.9.0
    meta = key.get("meta") if isinstance(key, Mapping) else None
    meta_key = meta.get("key") if isinstance(meta, Mapping) else meta
    if meta_key != "mark":
        return None
    return _int(mangle.get("value", mangle.get("right")))


def parse_rule_expr(expr: Any, name: Optional[str] = None) -> Optional[MarkRule]:
    """The rule if expr has exactly the shape this collection writes, else None."""
    if not isinstance(expr, list) or len(expr) != 3:
        return None
    dst, dport = _match(expr[0]), _match(expr[1])
    mark = _mark_value(expr[2])
    if dst is None or dport is None or mark is None:
        return None
    (l3, l3_field), dst_right = dst
    (l4, l4_field), dport_right = dport
    if l3 not in ("ip", "ip6") or l3_field != "daddr" or l4 not in PROTOCOLS or l4_field != "dport":
        return None
    destination = _address(dst_right)
    ports = _ports(dport_right)
    if destination is None or ports is None:
        return None
    if (l3 == "ip6") != (ipaddress.ip_network(destination).version == 6):
        return None
    return MarkRule(mark=mark, destination=destination, protocol=l4, ports=ports, name=name)


def _identity_name(comment: Optional[str]) -> Optional[str]:
    """The name part of a managed rule's comment (None for the default identity)."""
    if comment and comment.startswith(COMMENT_PREFIX):
        identity = comment[len(COMMENT_PREFIX) :]
        if _NAME_RE.match(identity):
            return identity
    return None


def parse_table_json(
    data: Any, table: TableName, texts: Optional[Mapping[int, str]] = None
) -> TableState:
    """TableState from the output of ``nft -j list table FAMILY NAME``.

    Objects of other tables (there should be none) are ignored.  `texts` maps
    rule handles to nft text (from ``nft -a list table``) for rules whose shape
    this module does not write.
    """
    state = TableState(table=table)
    items = data.get("nftables") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise NftError("nft returned JSON without an 'nftables' list")
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for kind, obj in item.items():
            if not isinstance(obj, Mapping) or obj.get("family") != table.family:
                continue
            if kind == "table" and obj.get("name") == table.name:
                state.exists = True
            elif kind == "chain" and obj.get("table") == table.name:
                state.chains.append(
                    CurrentChain(
                        name=str(obj.get("name")),
                        handle=_int(obj.get("handle")) or 0,
                        type=obj.get("type"),
                        hook=obj.get("hook"),
                        prio=_int(obj.get("prio")),
                        policy=obj.get("policy"),
                    )
                )
            elif kind == "rule" and obj.get("table") == table.name:
                handle = _int(obj.get("handle")) or 0
                comment = obj.get("comment") if isinstance(obj.get("comment"), str) else None
                rule = parse_rule_expr(obj.get("expr"), _identity_name(comment))
                if rule is not None and comment is not None:
                    text = '%s daddr %s %s dport %s meta mark set %d comment "%s"' % (
                        rule.l3,
                        rule.destination,
                        rule.protocol,
                        rule.ports_text(),
                        rule.mark,
                        comment,
                    )
                elif rule is not None:
                    text = rule.text().rsplit(" comment ", 1)[0]
                else:
                    text = (texts or {}).get(
                        handle, "# rule handle %d (%s)" % (handle, comment or "no comment")
                    )
                state.rules.append(
                    CurrentRule(
                        chain=str(obj.get("chain")),
                        handle=handle,
                        comment=comment,
                        rule=rule,
                        text=text,
                    )
                )
    return state


def rule_texts(listing: str) -> Dict[int, str]:
    """Rule handle -> rule text from ``nft -a list table`` output."""
    texts: Dict[int, str] = {}
    for line in listing.splitlines():
        found = re.match(r"^\s*(.*\S)\s+# handle (\d+)\s*$", line)
        if found and not found.group(1).endswith("{"):
            texts[int(found.group(2))] = found.group(1)
    return texts


# ---------------------------------------------------------------- planning


def render(table: TableName, chains: Sequence[Tuple[str, str, Sequence[str]]]) -> str:
    """nft-style text of a table: chains as (name, header, rule texts)."""
    lines = ["table %s {" % table]
    for index, (name, header, rules) in enumerate(chains):
        if index:
            lines.append("")
        lines.append("\tchain %s {" % name)
        if header:
            lines.append("\t\t%s" % header)
        lines.extend("\t\t%s" % rule for rule in rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_state(state: TableState) -> str:
    if not state.exists:
        return ""
    return render(
        state.table,
        [
            (chain.name, chain.text(), [rule.text for rule in state.rules_in(chain.name)])
            for chain in state.chains
        ],
    )


def _table_ref(table: TableName) -> Json:
    return {"family": table.family, "name": table.name}


def _chain_obj(table: TableName, spec: ChainSpec) -> Json:
    return {
        "family": table.family,
        "table": table.name,
        "name": spec.name,
        "type": spec.type,
        "hook": spec.hook,
        "prio": spec.prio,
        "policy": spec.policy,
    }


def _rule_obj(table: TableName, chain: str, rule: MarkRule, handle: Optional[int] = None) -> Json:
    obj: Json = {"family": table.family, "table": table.name, "chain": chain}
    if handle is not None:
        obj["handle"] = handle
    obj["expr"] = rule.expr()
    obj["comment"] = rule.comment
    return obj


def _delete_rule(table: TableName, rule: CurrentRule) -> Json:
    return {
        "delete": {
            "rule": {
                "family": table.family,
                "table": table.name,
                "chain": rule.chain,
                "handle": rule.handle,
            }
        }
    }


def plan(current: TableState, desired: Desired) -> Plan:
    """Commands that turn `current` into `desired`; empty when nothing is to change.

    Pure: no nft call.  Command order inside the batch: rule deletes, chain
    deletes, table and chain adds, in-place replaces, rule adds.  The batch is
    applied as one transaction.
    """
    table = desired.table
    if current.table != table:
        raise PlanError("the current state is of table %s, not %s" % (current.table, table))
    before = render_state(current)
    if desired.state == "absent":
        return _plan_absent(current, desired, before)

    wanted = [PREROUTING, OUTPUT] if desired.output else [PREROUTING]
    wanted_names = {spec.name for spec in wanted}
    desired_ids = {rule.identity: rule for rule in desired.rules}

    delete_rules: List[Json] = []
    delete_chains: List[Json] = []
    adds: List[Json] = []
    replaces: List[Json] = []
    add_rules: List[Json] = []
    actions: List[str] = []
    after_chains: List[Tuple[str, str, List[str]]] = []

    if not current.exists:
        adds.append({"add": {"table": _table_ref(table)}})
        actions.append("add table %s" % table)

    # Chains we do not want (output without output=true, or anything else in the table).
    for chain in current.chains:
        if chain.name in wanted_names:
            continue
        kept: List[str] = []
        for rule in current.rules_in(chain.name):
            if desired.purge or rule.identity in desired_ids:
                delete_rules.append(_delete_rule(table, rule))
                actions.append(
                    "delete rule %s %s handle %d (%s)" % (table, chain.name, rule.handle, rule.text)
                )
            else:
                kept.append(rule.text)
        if desired.purge:
            delete_chains.append(
                {
                    "delete": {
                        "chain": {"family": table.family, "table": table.name, "name": chain.name}
                    }
                }
            )
            actions.append("delete chain %s %s" % (table, chain.name))
        else:
            after_chains.append((chain.name, chain.text(), kept))

    for spec in wanted:
        existing = current.chain(spec.name)
        rules_now = current.rules_in(spec.name)
        if existing is not None and not existing.matches(spec):
            if not desired.purge:
                raise PlanError(
                    "chain %s %s exists as '%s' but must be '%s'; set purge=true to recreate it (its rules are removed)"
                    % (table, spec.name, existing.text() or "a regular chain", spec.text())
                )
            for rule in rules_now:
                delete_rules.append(_delete_rule(table, rule))
            delete_chains.append(
                {
                    "delete": {
                        "chain": {"family": table.family, "table": table.name, "name": spec.name}
                    }
                }
            )
            actions.append("recreate chain %s %s as '%s'" % (table, spec.name, spec.text()))
            existing, rules_now = None, []
        if existing is None:
            adds.append({"add": {"chain": _chain_obj(table, spec)}})
            if current.chain(spec.name) is None:
                actions.append("add chain %s %s" % (table, spec.name))
        kept_texts: List[str] = []
        done: Dict[str, bool] = {}
        for rule in rules_now:
            identity = rule.identity
            target = desired_ids.get(identity) if identity is not None else None
            if target is None:
                if desired.purge:
                    delete_rules.append(_delete_rule(table, rule))
                    actions.append(
                        "delete rule %s %s handle %d (%s)"
                        % (table, spec.name, rule.handle, rule.text)
                    )
                else:
                    kept_texts.append(rule.text)
                continue
            if done.get(target.identity):
                delete_rules.append(_delete_rule(table, rule))
                actions.append(
                    "delete duplicate rule %s %s handle %d (%s)"
                    % (table, spec.name, rule.handle, rule.text)
                )
                continue
            done[target.identity] = True
            if (
                rule.rule is not None
                and rule.rule.match() == target.match()
                and rule.comment == target.comment
            ):
                kept_texts.append(target.text())
            else:
                replaces.append(
                    {"replace": {"rule": _rule_obj(table, spec.name, target, rule.handle)}}
                )
                actions.append(
                    "replace rule %s %s handle %d with: %s"
                    % (table, spec.name, rule.handle, target.text())
                )
                kept_texts.append(target.text())
        for target in desired.rules:
            if not done.get(target.identity):
                add_rules.append({"add": {"rule": _rule_obj(table, spec.name, target)}})
                actions.append("add rule %s %s %s" % (table, spec.name, target.text()))
                kept_texts.append(target.text())
        after_chains.append((spec.name, spec.text(), kept_texts))

    # Keep the listing order of nft: existing chains first, in their order, then new ones.
    order = {chain.name: index for index, chain in enumerate(current.chains)}
    after_chains.sort(key=lambda item: order.get(item[0], len(order)))
    commands = delete_rules + delete_chains + adds + replaces + add_rules
    after = render(table, after_chains) if commands else before
    after_rules = list(desired.rules)
    if not desired.purge:
        after_rules += [
            rule for rule in current.managed_rules() if rule.identity not in desired_ids
        ]
    return Plan(
        commands=commands, actions=actions, before=before, after=after, after_rules=after_rules
    )


def _plan_absent(current: TableState, desired: Desired, before: str) -> Plan:
    table = desired.table
    if not current.exists:
        return Plan(commands=[], actions=[], before=before, after=before, after_rules=[])
    if desired.purge:
        return Plan(
            commands=[{"delete": {"table": _table_ref(table)}}],
            actions=["delete table %s" % table],
            before=before,
            after="",
            after_rules=[],
        )
    remove = set(desired.remove)
    commands: List[Json] = []
    actions: List[str] = []
    after_chains: List[Tuple[str, str, List[str]]] = []
    for chain in current.chains:
        kept: List[str] = []
        for rule in current.rules_in(chain.name):
            if rule.identity is not None and rule.identity in remove:
                commands.append(_delete_rule(table, rule))
                actions.append(
                    "delete rule %s %s handle %d (%s)" % (table, chain.name, rule.handle, rule.text)
                )
            else:
                kept.append(rule.text)
        after_chains.append((chain.name, chain.text(), kept))
    after = render(table, after_chains) if commands else before
    after_rules = [rule for rule in current.managed_rules() if rule.identity not in remove]
    return Plan(
        commands=commands, actions=actions, before=before, after=after, after_rules=after_rules
    )


# ---------------------------------------------------------------- running nft

# run(argv, stdin) -> (returncode, stdout, stderr)
Runner = Callable[[List[str], Optional[str]], Tuple[int, str, str]]


def subprocess_runner(argv: List[str], stdin: Optional[str]) -> Tuple[int, str, str]:
    """A Runner on subprocess (the Ansible module passes module.run_command instead)."""
    import os
    import subprocess

    env = dict(os.environ, LC_ALL="C", LANG="C")
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    return done.returncode, done.stdout, done.stderr


def explain(stderr: str, table: TableName, creating: bool) -> str:
    """A clear reason for an nft failure (the raw message is appended)."""
    errors = [
        line.replace("internal:0:0-0: ", "").strip()
        for line in stderr.splitlines()
        if "Error:" in line
    ]
    if len(errors) > 1:
        # nft reports the first failure, then one line per later command of the aborted batch.
        text = "%s (and %d more errors in the aborted batch)" % (errors[0], len(errors) - 1)
    elif errors:
        text = errors[0]
    else:
        text = " ".join(stderr.split())
    low = text.lower()
    if (
        "json support not compiled" in low
        or "unrecognized option '--json'" in low
        or "invalid option -- 'j'" in low
    ):
        reason = "nft was built without JSON support; this module needs nftables >= 0.9 with JSON (libjansson)"
    elif "operation not permitted" in low or "permission denied" in low:
        reason = "permission denied: changing nftables needs root (CAP_NET_ADMIN)"
    elif creating and (
        "operation not supported" in low
        or "protocol not supported" in low
        or "address family not supported" in low
    ):
        reason = (
            "the kernel has no nf_tables support for the %s family (CONFIG_NF_TABLES_%s); "
            "use a kernel with it, or mark packets with the iptables mangle table"
            % (table.family, {"inet": "INET", "ip": "IPV4", "ip6": "IPV6"}[table.family])
        )
    elif "device or resource busy" in low:
        reason = (
            "the kernel refused to delete an object still in use "
            "(a chain referenced by a jump or a verdict map in the table)"
        )
    elif "protocol not supported" in low or "operation not supported" in low:
        reason = "the kernel does not support nf_tables (or this rule) here"
    else:
        reason = "nft failed"
    return "%s: %s" % (reason, text or "(no message)")


class Nft:
    """Read and change one nftables table through ``nft -j``."""

    def __init__(self, binary: str, runner: Runner = subprocess_runner) -> None:
        self.binary = binary
        self.runner = runner

    def read_table(self, table: TableName) -> TableState:
        rc, out, err = self.runner(
            [self.binary, "-j", "list", "table", table.family, table.name], None
        )
        if rc != 0:
            if "no such file or directory" in err.lower():
                return TableState(table=table)
            raise NftError(
                "cannot read table %s: %s" % (table, explain(err, table, creating=False))
            )
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise NftError(
                "nft -j printed no JSON (%s); nftables >= 0.9 with JSON support is needed" % exc
            ) from None
        state = parse_table_json(data, table)
        if any(rule.rule is None for rule in state.rules):
            rc, out, err = self.runner(
                [self.binary, "-a", "list", "table", table.family, table.name], None
            )
            if rc == 0:
                state = parse_table_json(data, table, rule_texts(out))
        return state

    def apply(self, the_plan: Plan, check: bool = False) -> None:
        """Send the plan as one transaction (check: the kernel checks it, nothing is committed)."""
        if not the_plan.commands:
            return
        argv = [self.binary, "-j"] + (["-c"] if check else []) + ["-f", "-"]
        rc, _out, err = self.runner(argv, json.dumps(the_plan.batch()))
        if rc != 0:
            creating = any("table" in command.get("add", {}) for command in the_plan.commands)
            table = self._table_of(the_plan)
            what = "checking" if check else "applying"
            raise NftError(
                "%s the change failed, nothing was changed: %s"
                % (what, explain(err, table, creating))
            )

    @staticmethod
    def _table_of(the_plan: Plan) -> TableName:
        for command in the_plan.commands:
            for obj in command.values():
                for inner in obj.values():
                    family = inner.get("family")
                    name = inner.get("table", inner.get("name"))
                    if isinstance(family, str) and isinstance(name, str):
                        return TableName(family, name)
        return parse_table(DEFAULT_TABLE)  # pragma: no cover - a plan always names its table
