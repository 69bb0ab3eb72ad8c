# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks: the current table from ``nft -j list table``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from .model import (
    _NAME_RE,
    COMMENT_PREFIX,
    PROTOCOLS,
    CurrentChain,
    CurrentRule,
    MarkRule,
    NftError,
    PortRanges,
    TableName,
    TableState,
)
from .params import (
    merge_ranges,
)

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
