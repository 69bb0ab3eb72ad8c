# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks: the table, chains and rules as values, and their errors."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ..ipvs.errors import HaecsError

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
