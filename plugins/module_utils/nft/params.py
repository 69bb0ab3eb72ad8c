# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks: module options to checked rules; errors name the field
(``rules[1].ports[0]: must be a port 1-65535 or a range a-b``)."""

from __future__ import annotations

import ipaddress
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from ..ipvs.params import ValidationError, field_path
from .model import (
    _NAME_RE,
    _RANGE_RE,
    _TABLE_NAME_RE,
    DEFAULT_TABLE,
    MAX_COMMENT,
    MAX_MARK,
    PROTOCOLS,
    RULE_FIELDS,
    STATES,
    TABLE_FAMILIES,
    Desired,
    MarkRule,
    PortRanges,
    TableName,
)

# ---------------------------------------------------------------- validation


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
                field_path(prefix, str(key)), "unknown option; allowed: %s" % ", ".join(RULE_FIELDS)
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
            raise ValidationError(field_path(prefix, required), "is required")
    protocol = params.get("protocol")
    if protocol is None:
        protocol = "tcp"
    if protocol not in PROTOCOLS:
        raise ValidationError(
            field_path(prefix, "protocol"),
            "must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol),
        )
    rule = MarkRule(
        mark=parse_mark(params["mark"], field_path(prefix, "mark")),
        destination=parse_destination(
            params["destination"], field_path(prefix, "destination"), table_family
        ),
        protocol=str(protocol),
        ports=parse_ports(params["ports"], field_path(prefix, "ports")),
        name=parse_name(params.get("name"), field_path(prefix, "name")),
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
        mark = parse_mark(params["mark"], field_path(prefix, "mark"))
    if params.get("destination") is not None:
        destination = parse_destination(
            params["destination"], field_path(prefix, "destination"), table_family
        )
    protocol = params.get("protocol")
    if protocol is None:
        protocol = "tcp"
    if protocol not in PROTOCOLS:
        raise ValidationError(
            field_path(prefix, "protocol"),
            "must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol),
        )
    if params.get("ports") is not None:
        parse_ports(params["ports"], field_path(prefix, "ports"))
    name = parse_name(params.get("name"), field_path(prefix, "name"))
    if name is not None:
        return name
    if mark is None:
        raise ValidationError(field_path(prefix, "mark"), "is required (or give name)")
    if destination is None:
        raise ValidationError(field_path(prefix, "destination"), "is required (or give name)")
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
