"""Firewall marks (module_utils/nft): validation, parsing of `nft -j` output, the pure planner, the nft runner."""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    ValidationError,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.apply import (
    Nft,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.model import (
    Desired,
    MarkRule,
    NftError,
    PlanError,
    TableName,
    TableState,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.params import (
    merge_ranges,
    parse_desired,
    parse_table,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.plan import (
    plan,
)
from ansible_collections.haecs.lvs.plugins.module_utils.nft.read import (
    parse_rule_expr,
    parse_table_json,
    rule_texts,
)

INET = TableName("inet", "haecs")


def error_of(call, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)
    return caught.value


# ---------------------------------------------------------------- a fake kernel


class FakeRuleset:
    """Just enough of nf_tables to apply our batches and list a table as `nft -j` does."""

    def __init__(self) -> None:
        self.objects: List[
            Dict[str, Any]
        ] = []  # {"table": {...}} / {"chain": {...}} / {"rule": {...}}
        self.next_handle = 1
        self.batches = 0

    def _handle(self) -> int:
        self.next_handle += 1
        return self.next_handle

    def _find(self, kind: str, **match: Any) -> Optional[Dict[str, Any]]:
        for obj in self.objects:
            if kind in obj and all(obj[kind].get(key) == value for key, value in match.items()):
                return obj
        return None

    def apply(self, batch: Dict[str, Any]) -> None:
        saved = copy.deepcopy(self.objects)
        try:
            for command in batch["nftables"]:
                ((verb, body),) = command.items()
                ((kind, obj),) = body.items()
                getattr(self, "_%s_%s" % (verb, kind))(copy.deepcopy(obj))
        except Exception:
            self.objects = saved
            raise
        self.batches += 1

    def _add_table(self, obj: Dict[str, Any]) -> None:
        if not self._find("table", family=obj["family"], name=obj["name"]):
            obj["handle"] = self._handle()
            self.objects.append({"table": obj})

    def _delete_table(self, obj: Dict[str, Any]) -> None:
        fam, name = obj["family"], obj["name"]
        assert self._find("table", family=fam, name=name), "no such table"
        self.objects = [o for o in self.objects if self._table_of(o) != (fam, name)]

    @staticmethod
    def _table_of(obj: Dict[str, Any]) -> Tuple[str, str]:
        (body,) = obj.values()
        return body["family"], body.get("table", body.get("name"))

    def _add_chain(self, obj: Dict[str, Any]) -> None:
        assert self._find("table", family=obj["family"], name=obj["table"]), "no such table"
        existing = self._find("chain", family=obj["family"], table=obj["table"], name=obj["name"])
        if existing:
            assert existing["chain"].get("hook") == obj.get("hook"), "chain type change"
            return
        obj["handle"] = self._handle()
        self.objects.append({"chain": obj})

    def _delete_chain(self, obj: Dict[str, Any]) -> None:
        chain = self._find("chain", family=obj["family"], table=obj["table"], name=obj["name"])
        assert chain, "no such chain"
        assert not self._find(
            "rule", family=obj["family"], table=obj["table"], chain=obj["name"]
        ), "chain busy"
        self.objects.remove(chain)

    def _add_rule(self, obj: Dict[str, Any]) -> None:
        assert self._find("chain", family=obj["family"], table=obj["table"], name=obj["chain"]), (
            "no such chain"
        )
        obj["handle"] = self._handle()
        self.objects.append({"rule": obj})

    def _replace_rule(self, obj: Dict[str, Any]) -> None:
        rule = self._find(
            "rule",
            family=obj["family"],
            table=obj["table"],
            chain=obj["chain"],
            handle=obj["handle"],
        )
        assert rule, "no such rule"
        rule["rule"] = obj

    def _delete_rule(self, obj: Dict[str, Any]) -> None:
        rule = self._find(
            "rule",
            family=obj["family"],
            table=obj["table"],
            chain=obj["chain"],
            handle=obj["handle"],
        )
        assert rule, "no such rule"
        self.objects.remove(rule)

    def listing(self, table: TableName) -> Optional[Dict[str, Any]]:
        if not self._find("table", family=table.family, name=table.name):
            return None
        items: List[Dict[str, Any]] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
        for kind in ("table", "chain", "rule"):
            for obj in self.objects:
                if kind in obj and self._table_of(obj) == (table.family, table.name):
                    items.append(copy.deepcopy(obj))
        return {"nftables": items}

    def runner(self, argv: List[str], stdin: Optional[str]) -> Tuple[int, str, str]:
        if argv[1:3] == ["-j", "list"]:
            listing = self.listing(TableName(argv[4], argv[5]))
            if listing is None:
                return 1, "", "Error: No such file or directory\nlist table inet haecs\n"
            return 0, json.dumps(listing), ""
        if argv[1:3] == ["-a", "list"]:
            return 0, "", ""
        assert argv[-2:] == ["-f", "-"] and stdin is not None
        if "-c" in argv:
            return 0, "", ""
        try:
            self.apply(json.loads(stdin))
        except AssertionError as exc:
            return 1, "", "Error: Could not process rule: %s" % exc
        return 0, "", ""


def converge(ruleset: FakeRuleset, check: bool = False, **options: Any):
    desired = parse_desired(**options)
    nft = Nft("nft", ruleset.runner)
    the_plan = plan(nft.read_table(desired.table), desired)
    nft.apply(the_plan, check=check)
    return the_plan


def comments(ruleset: FakeRuleset, chain: str = "prerouting") -> List[str]:
    return [
        o["rule"].get("comment")
        for o in ruleset.objects
        if "rule" in o and o["rule"]["chain"] == chain
    ]


WEB = {"mark": 42, "destination": "192.0.2.10", "protocol": "tcp", "ports": [80, 443]}
DNS6 = {
    "name": "dns6",
    "mark": 7,
    "destination": "2001:db8::/64",
    "protocol": "udp",
    "ports": ["53"],
}


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        (
            {**WEB, "ports": [80, "http"]},
            "rules[0].ports[1]",
            "must be a port 1-65535 or a range a-b",
        ),
        ({**WEB, "ports": [0]}, "rules[0].ports[0]", "must be a port 1-65535"),
        ({**WEB, "ports": [65536]}, "rules[0].ports[0]", "must be a port 1-65535"),
        ({**WEB, "ports": ["90-80"]}, "rules[0].ports[0]", "range a-b"),
        ({**WEB, "ports": ["1-70000"]}, "rules[0].ports[0]", "range a-b"),
        ({**WEB, "ports": [True]}, "rules[0].ports[0]", "must be a port"),
        ({**WEB, "ports": [1.5]}, "rules[0].ports[0]", "must be a port"),
        ({**WEB, "ports": []}, "rules[0].ports", "at least one port"),
        ({**WEB, "ports": {"a": 1}}, "rules[0].ports", "must be a list"),
        ({**WEB, "mark": 0}, "rules[0].mark", "1 to 4294967295"),
        ({**WEB, "mark": 2**32}, "rules[0].mark", "1 to 4294967295"),
        ({**WEB, "mark": "forty"}, "rules[0].mark", "integer"),
        ({**WEB, "mark": True}, "rules[0].mark", "integer"),
        ({**WEB, "destination": "300.1.1.1"}, "rules[0].destination", "IPv4 or IPv6"),
        ({**WEB, "destination": 5}, "rules[0].destination", "IPv4 or IPv6"),
        (
            {**WEB, "destination": "192.0.2.5/24"},
            "rules[0].destination",
            "did you mean 192.0.2.0/24",
        ),
        ({**WEB, "protocol": "icmp"}, "rules[0].protocol", "tcp, udp, sctp"),
        ({**WEB, "name": "1abc"}, "rules[0].name", "start with a letter"),
        ({**WEB, "name": "a b"}, "rules[0].name", "start with a letter"),
        ({**WEB, "colour": "red"}, "rules[0].colour", "unknown option"),
        ({"destination": "192.0.2.10", "ports": [80]}, "rules[0].mark", "is required"),
        ({"mark": 1, "ports": [80]}, "rules[0].destination", "is required"),
        ({"mark": 1, "destination": "192.0.2.10"}, "rules[0].ports", "is required"),
    ],
)
def test_rule_errors_name_the_field(rule, field, fragment):
    error = error_of(parse_desired, rules=[rule])
    assert error.field == field
    assert fragment in str(error)
    assert str(error).startswith(field + ": ")


def test_second_rule_error_has_its_index():
    error = error_of(parse_desired, rules=[WEB, {**WEB, "mark": 43, "ports": [80, "x"]}])
    assert str(error) == "rules[1].ports[1]: must be a port 1-65535 or a range a-b, got 'x'"


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"rules": "x"}, "rules", "must be a list"),
        ({"rules": ["x"]}, "rules[0]", "must be a mapping"),
        ({"rules": [], "state": "gone"}, "state", "present or absent"),
        ({"rules": [], "table": "bridge haecs"}, "table", "family must be one of inet, ip, ip6"),
        ({"rules": [], "table": "inet a b"}, "table", "FAMILY NAME"),
        ({"rules": [], "table": "inet bad name!"}, "table", "FAMILY NAME"),
        ({"rules": [], "table": "inet 'x"}, "table", "name must be"),
        ({"rules": [], "table": ""}, "table", "FAMILY NAME"),
        (
            {"rules": [{**WEB, "destination": "2001:db8::1"}], "table": "ip haecs"},
            "rules[0].destination",
            "IPv6",
        ),
        ({"rules": [WEB], "table": "ip6 haecs"}, "rules[0].destination", "IPv4"),
        ({"rules": [WEB, {**WEB, "ports": [22]}]}, "rules[1]", "same identity as rules[0]"),
        ({"rules": [WEB], "state": "absent", "purge": True}, "purge", "whole table"),
        ({"rules": [{"mark": 1}], "state": "absent"}, "rules[0].destination", "or give name"),
        (
            {
                "rules": [{"mark": 1, "destination": "192.0.2.1", "protocol": "gre"}],
                "state": "absent",
            },
            "rules[0].protocol",
            "tcp",
        ),
        (
            {"rules": [{"name": "x", "ports": ["a"]}], "state": "absent"},
            "rules[0].ports[0]",
            "must be a port",
        ),
        (
            {"rules": [{"name": "9x"}], "state": "absent"},
            "rules[0].name",
            "start with a letter",
        ),
        (
            {"rules": [{"destination": "192.0.2.1"}], "state": "absent"},
            "rules[0].mark",
            "or give name",
        ),
        (
            {"rules": [{"mark": 1, "destination": "192.0.2.1", "ports": ["a"]}], "state": "absent"},
            "rules[0].ports[0]",
            "port",
        ),
        ({"rules": [42], "state": "absent"}, "rules[0]", "mapping"),
    ],
)
def test_option_errors(options, field, fragment):
    error = error_of(parse_desired, **options)
    assert error.field == field
    assert fragment in str(error)


def test_overlapping_rules_with_different_marks_are_refused():
    other = {"mark": 43, "destination": "192.0.2.0/24", "ports": ["400-500"]}
    error = error_of(parse_desired, rules=[WEB, other])
    assert error.field == "rules[1]"
    assert "overlaps rules[0] (tcp 192.0.2.0/24 port 443)" in str(error)
    # Same mark, or another protocol, or disjoint ports/addresses: fine.
    parse_desired(rules=[WEB, {**other, "mark": 42}])
    parse_desired(rules=[WEB, {**other, "protocol": "udp"}])
    parse_desired(rules=[WEB, {**other, "ports": [8080]}])
    parse_desired(rules=[WEB, {**other, "destination": "198.51.100.0/24"}])
    parse_desired(rules=[WEB, {**other, "destination": "2001:db8::/32"}])


def test_normalisation():
    desired = parse_desired(
        rules=[
            {
                "mark": "0x2a",
                "destination": " 192.0.2.10/32 ",
                "ports": [443, "80", "81", "8000 - 8080", 8050],
            },
            {"mark": "7", "destination": "2001:DB8:0:0::/64", "protocol": "udp", "ports": 53},
        ],
        table="haecs",
    )
    web, dns = desired.rules
    assert desired.table == INET
    assert web == MarkRule(42, "192.0.2.10", "tcp", ((80, 81), (443, 443), (8000, 8080)))
    assert web.comment == "haecs:42:tcp:192.0.2.10"
    assert (
        web.text()
        == 'ip daddr 192.0.2.10 tcp dport { 80-81, 443, 8000-8080 } meta mark set 42 comment "haecs:42:tcp:192.0.2.10"'
    )
    assert dns.destination == "2001:db8::/64"
    assert (
        dns.text()
        == 'ip6 daddr 2001:db8::/64 udp dport 53 meta mark set 7 comment "haecs:7:udp:2001:db8::/64"'
    )
    assert dns.as_dict()["ports"] == ["53"]


def test_merge_ranges():
    assert merge_ranges([(5, 5), (1, 2), (3, 3), (10, 20), (15, 25), (27, 27)]) == (
        (1, 3),
        (5, 5),
        (10, 25),
        (27, 27),
    )
    assert merge_ranges([]) == ()


def test_parse_table():
    assert parse_table("ip6 lb") == TableName("ip6", "lb")
    assert str(parse_table("inet haecs")) == "inet haecs"
    assert error_of(parse_table, None).field == "table"


def test_absent_identities():
    desired = parse_desired(
        rules=[
            {"name": "web"},
            {"mark": 42, "destination": "192.0.2.10"},
            {"mark": 42, "destination": "192.0.2.10"},
        ],
        state="absent",
    )
    assert desired.remove == ("web", "42:tcp:192.0.2.10")
    assert parse_desired(rules=None, state="absent", purge=True).purge


# ---------------------------------------------------------------- nft JSON


# Captured from `nft -j list table inet haecs` (nftables 1.0.6, kernel 6.18).
LISTING = {
    "nftables": [
        {
            "metainfo": {
                "version": "1.0.6",
                "release_name": "Lester Gooch #5",
                "json_schema_version": 1,
            }
        },
        {"table": {"family": "inet", "name": "haecs", "handle": 1}},
        {
            "chain": {
                "family": "inet",
                "table": "haecs",
                "name": "prerouting",
                "handle": 1,
                "type": "filter",
                "hook": "prerouting",
                "prio": -150,
                "policy": "accept",
            }
        },
        {
            "rule": {
                "family": "inet",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 4,
                "comment": "haecs:42:tcp:10.0.0.1",
                "expr": [
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                            "right": "10.0.0.1",
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": {"set": [80, 443, {"range": [8000, 8080]}]},
                        }
                    },
                    {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 42}},
                ],
            }
        },
        {
            "rule": {
                "family": "inet",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 5,
                "comment": "haecs:dns",
                "expr": [
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                            "right": {"prefix": {"addr": "2001:db8::", "len": 64}},
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "udp", "field": "dport"}},
                            "right": 53,
                        }
                    },
                    {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 7}},
                ],
            }
        },
        {
            "rule": {
                "family": "inet",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 6,
                "expr": [
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                            "right": {"prefix": {"addr": "10.0.0.0", "len": 24}},
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "sctp", "field": "dport"}},
                            "right": {"range": [1, 2]},
                        }
                    },
                    {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 4294967295}},
                ],
            }
        },
        {
            "rule": {
                "family": "inet",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 7,
                "expr": [{"counter": {"packets": 0, "bytes": 0}}],
            }
        },
        {"table": {"family": "inet", "name": "other", "handle": 2}},
        {
            "rule": {
                "family": "ip",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 9,
                "expr": [],
            }
        },
    ]
}


def test_parse_listing():
    state = parse_table_json(LISTING, INET, {7: "counter packets 0 bytes 0"})
    assert state.exists
    assert [c.name for c in state.chains] == ["prerouting"]
    assert [r.handle for r in state.rules] == [4, 5, 6, 7]
    web, dns, anon, counter = state.rules
    assert web.rule == MarkRule(42, "10.0.0.1", "tcp", ((80, 80), (443, 443), (8000, 8080)))
    assert web.identity == "42:tcp:10.0.0.1"
    assert dns.rule is not None and dns.rule.name == "dns" and dns.rule.comment == "haecs:dns"
    assert anon.identity is None and anon.rule is not None and anon.rule.mark == 2**32 - 1
    assert anon.text == "ip daddr 10.0.0.0/24 sctp dport 1-2 meta mark set 4294967295"
    assert counter.rule is None and counter.text == "counter packets 0 bytes 0"
    assert [r.identity for r in state.managed_rules()] == ["42:tcp:10.0.0.1", "dns"]
    # Without the text listing an unknown rule still shows up in the diff.
    assert parse_table_json(LISTING, INET).rules[3].text == "# rule handle 7 (no comment)"
    with pytest.raises(NftError):
        parse_table_json({"oops": 1}, INET)


@pytest.mark.parametrize(
    "expr",
    [
        None,
        [],
        [{"counter": None}] * 3,
        # 0.9.0-style mangle (left/right) with another meta key
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            LISTING["nftables"][3]["rule"]["expr"][1],
            {"mangle": {"left": {"meta": "priority"}, "right": 1}},
        ],
        # source address instead of destination
        [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": "10.0.0.1",
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][1],
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        # ip payload with an IPv6 address
        [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "2001:db8::1",
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][1],
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        # != match
        [
            {
                "match": {
                    "op": "!=",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "10.0.0.1",
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][1],
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        # a named set as port list, a bad address, an empty set, a broken range
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": "@ports",
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "nope",
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][1],
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": {"set": []},
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": {"range": [1]},
                }
            },
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            LISTING["nftables"][3]["rule"]["expr"][2],
        ],
        [
            LISTING["nftables"][3]["rule"]["expr"][0],
            LISTING["nftables"][3]["rule"]["expr"][1],
            {"mangle": "x"},
        ],
    ],
)
def test_foreign_shapes_are_not_ours(expr):
    assert parse_rule_expr(expr) is None


def test_old_nft_mangle_form_is_understood():
    expr = copy.deepcopy(LISTING["nftables"][3]["rule"]["expr"])
    expr[2] = {"mangle": {"left": {"meta": "mark"}, "right": 42}}
    rule = parse_rule_expr(expr)
    assert rule is not None and rule.mark == 42


def test_our_expr_round_trips():
    for rule in parse_desired(
        rules=[
            WEB,
            DNS6,
            {"mark": 3, "destination": "10.0.0.0/8", "protocol": "sctp", "ports": ["1-9"]},
        ]
    ).rules:
        back = parse_rule_expr(rule.expr(), rule.name)
        assert back == rule


def test_rule_texts_from_listing():
    listing = (
        "table inet haecs { # handle 1\n\tchain prerouting { # handle 1\n"
        "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
        "\t\tcounter packets 3 bytes 180 # handle 7\n\t}\n}\n"
    )
    assert rule_texts(listing) == {7: "counter packets 3 bytes 180"}


# ---------------------------------------------------------------- planning against the fake kernel


def test_create_then_idempotent():
    ruleset = FakeRuleset()
    first = converge(ruleset, rules=[WEB, DNS6])
    assert first.changed
    assert first.actions[:2] == ["add table inet haecs", "add chain inet haecs prerouting"]
    assert first.before == ""
    assert (
        'ip daddr 192.0.2.10 tcp dport { 80, 443 } meta mark set 42 comment "haecs:42:tcp:192.0.2.10"'
        in first.after
    )
    assert "type filter hook prerouting priority mangle; policy accept;" in first.after
    assert comments(ruleset) == ["haecs:42:tcp:192.0.2.10", "haecs:dns6"]
    second = converge(ruleset, rules=[WEB, DNS6])
    assert not second.changed and second.commands == [] and second.actions == []
    assert second.before == second.after == first.after
    assert ruleset.batches == 1
    assert [r["comment"] for r in second.batch()["nftables"]] == []


def test_check_mode_changes_nothing():
    ruleset = FakeRuleset()
    planned = converge(ruleset, check=True, rules=[WEB])
    assert planned.changed and ruleset.objects == []


def test_changed_ports_replace_in_place():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[WEB, DNS6])
    handle = ruleset.objects[2]["rule"]["handle"]
    changed = converge(ruleset, rules=[{**WEB, "ports": [80, 443, 8443]}, DNS6])
    assert [list(c) for c in changed.commands] == [["replace"]]
    assert changed.commands[0]["replace"]["rule"]["handle"] == handle
    assert comments(ruleset) == ["haecs:42:tcp:192.0.2.10", "haecs:dns6"]
    assert "{ 80, 443, 8443 }" in changed.after and "{ 80, 443 }" in changed.before
    assert not converge(ruleset, rules=[{**WEB, "ports": [80, 443, 8443]}, DNS6]).changed


def test_named_rule_can_change_mark():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[DNS6])
    changed = converge(ruleset, rules=[{**DNS6, "mark": 8}])
    assert [list(c) for c in changed.commands] == [["replace"]]
    assert ruleset.objects[2]["rule"]["expr"][2]["mangle"]["value"] == 8


def test_unlisted_rules_stay_without_purge_and_go_with_it():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[WEB, DNS6])
    ruleset.objects.append(
        {
            "rule": {
                "family": "inet",
                "table": "haecs",
                "chain": "prerouting",
                "handle": 99,
                "expr": [{"counter": None}],
            }
        }
    )
    kept = converge(ruleset, rules=[WEB])
    assert not kept.changed
    assert {r["comment"] for r in [r.as_dict() for r in kept.after_rules]} == {
        "haecs:42:tcp:192.0.2.10",
        "haecs:dns6",
    }
    purged = converge(ruleset, rules=[WEB], purge=True)
    assert sorted(next(iter(c)) for c in purged.commands) == ["delete", "delete"]
    assert comments(ruleset) == ["haecs:42:tcp:192.0.2.10"]
    assert "# rule handle 99" in purged.before and "# rule handle 99" not in purged.after
    assert [r.identity for r in purged.after_rules] == ["42:tcp:192.0.2.10"]


def test_duplicates_and_foreign_shapes_with_our_comment():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[WEB])
    dup = copy.deepcopy(ruleset.objects[2])
    dup["rule"]["handle"] = 50
    ruleset.objects.append(dup)
    ruleset.objects[2]["rule"]["expr"] = [{"counter": None}]  # someone edited our rule
    fixed = converge(ruleset, rules=[WEB])
    assert sorted(next(iter(c)) for c in fixed.commands) == ["delete", "replace"]
    assert any("duplicate" in action for action in fixed.actions)
    assert comments(ruleset) == ["haecs:42:tcp:192.0.2.10"]
    assert not converge(ruleset, rules=[WEB]).changed


def test_output_chain():
    ruleset = FakeRuleset()
    with_output = converge(ruleset, rules=[WEB], output=True)
    assert "add chain inet haecs output" in with_output.actions
    assert comments(ruleset, "output") == ["haecs:42:tcp:192.0.2.10"]
    chain = next(
        o["chain"] for o in ruleset.objects if "chain" in o and o["chain"]["name"] == "output"
    )
    assert (chain["type"], chain["hook"], chain["prio"]) == ("route", "output", -150)
    assert "type route hook output priority mangle; policy accept;" in with_output.after
    assert not converge(ruleset, rules=[WEB], output=True).changed
    # output=false: the listed rule leaves the output chain, the chain stays...
    off = converge(ruleset, rules=[WEB])
    assert [next(iter(c)) for c in off.commands] == ["delete"]
    assert comments(ruleset, "output") == []
    assert any("chain" in o and o["chain"]["name"] == "output" for o in ruleset.objects)
    # ...until purge.
    converge(ruleset, rules=[WEB], purge=True)
    assert not any("chain" in o and o["chain"]["name"] == "output" for o in ruleset.objects)
    assert not converge(ruleset, rules=[WEB], purge=True).changed


def test_unlisted_chain_rules_kept_without_purge():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[WEB, DNS6], output=True)
    plan_off = converge(ruleset, rules=[WEB])
    # the listed rule leaves output; dns6 (not listed) stays there
    assert comments(ruleset, "output") == ["haecs:dns6"]
    assert 'comment "haecs:dns6"' in plan_off.after


def test_changed_chain_needs_purge():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[WEB])
    ruleset.objects[1]["chain"]["prio"] = 0
    with pytest.raises(PlanError, match="set purge=true to recreate it"):
        converge(ruleset, rules=[WEB])
    recreated = converge(ruleset, rules=[WEB], purge=True)
    assert any(
        action.startswith("recreate chain inet haecs prerouting") for action in recreated.actions
    )
    chain = next(o["chain"] for o in ruleset.objects if "chain" in o)
    assert chain["prio"] == -150
    assert comments(ruleset) == ["haecs:42:tcp:192.0.2.10"]
    assert not converge(ruleset, rules=[WEB], purge=True).changed


def test_regular_chain_named_prerouting_is_refused():
    ruleset = FakeRuleset()
    ruleset.objects = [
        {"table": {"family": "inet", "name": "haecs", "handle": 1}},
        {"chain": {"family": "inet", "table": "haecs", "name": "prerouting", "handle": 2}},
    ]
    with pytest.raises(PlanError, match="exists as 'a regular chain'"):
        converge(ruleset, rules=[WEB])


def test_absent():
    ruleset = FakeRuleset()
    assert not converge(ruleset, rules=[WEB], state="absent").changed  # no table: nothing to do
    converge(ruleset, rules=[WEB, DNS6], output=True)
    gone = converge(
        ruleset,
        rules=[{"mark": 42, "destination": "192.0.2.10", "protocol": "tcp"}],
        state="absent",
    )
    assert [next(iter(c)) for c in gone.commands] == ["delete", "delete"]
    assert comments(ruleset) == ["haecs:dns6"] and comments(ruleset, "output") == ["haecs:dns6"]
    assert [r.identity for r in gone.after_rules] == ["dns6"]
    assert not converge(ruleset, rules=[WEB], state="absent").changed
    named = converge(ruleset, rules=[{"name": "dns6"}], state="absent")
    assert named.changed and comments(ruleset) == []
    table = converge(ruleset, state="absent", purge=True, rules=[])
    assert table.commands == [{"delete": {"table": {"family": "inet", "name": "haecs"}}}]
    assert table.after == "" and ruleset.objects == []
    assert not converge(ruleset, state="absent", purge=True, rules=[]).changed


def test_present_with_no_rules_makes_table_and_chain():
    ruleset = FakeRuleset()
    made = converge(ruleset, rules=[])
    assert made.actions == ["add table inet haecs", "add chain inet haecs prerouting"]
    assert not converge(ruleset, rules=[]).changed


def test_other_tables_are_never_named():
    ruleset = FakeRuleset()
    ruleset.objects.append({"table": {"family": "inet", "name": "other", "handle": 1}})
    ruleset.objects.append(
        {"chain": {"family": "inet", "table": "other", "name": "prerouting", "handle": 2}}
    )
    for options in (
        {"rules": [WEB], "purge": True, "output": True},
        {"rules": [], "state": "absent", "purge": True},
    ):
        the_plan = converge(ruleset, **options)
        for command in the_plan.commands:
            (body,) = command.values()
            (obj,) = body.values()
            assert obj.get("table", obj.get("name")) == "haecs"
    assert ruleset.objects[:2] == [
        {"table": {"family": "inet", "name": "other", "handle": 1}},
        {"chain": {"family": "inet", "table": "other", "name": "prerouting", "handle": 2}},
    ]


def test_plan_refuses_another_table():
    with pytest.raises(PlanError):
        plan(TableState(TableName("ip", "x")), Desired(table=INET))


RULES = st.lists(
    st.fixed_dictionaries(
        {
            "mark": st.integers(1, 5),
            "destination": st.sampled_from(
                ["192.0.2.1", "192.0.2.2", "198.51.100.0/24", "2001:db8::1"]
            ),
            "protocol": st.sampled_from(["tcp", "udp"]),
            "ports": st.lists(
                st.one_of(st.integers(1, 30), st.sampled_from(["10-20", "25-28"])),
                min_size=1,
                max_size=4,
            ),
        }
    ),
    max_size=5,
)


def _valid(rules: List[Dict[str, Any]]) -> bool:
    try:
        parse_desired(rules=rules)
    except ValidationError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(first=RULES, second=RULES, purge=st.booleans(), output=st.booleans())
def test_any_two_states_converge_and_rerun_is_empty(first, second, purge, output):
    """From any state the module made, any other converges in one batch and a rerun sends nothing."""
    if not (_valid(first) and _valid(second)):
        return
    ruleset = FakeRuleset()
    converge(ruleset, rules=first, output=not output)
    result = converge(ruleset, rules=second, purge=purge, output=output)
    assert result.after == converge(ruleset, rules=second, purge=purge, output=output).before
    rerun = converge(ruleset, rules=second, purge=purge, output=output)
    assert not rerun.changed
    wanted = {rule.comment for rule in parse_desired(rules=second).rules}
    present = set(comments(ruleset))
    assert wanted <= present
    if purge:
        assert present == wanted


# ---------------------------------------------------------------- the nft runner


class Scripted:
    def __init__(self, *answers: Tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls: List[Tuple[List[str], Optional[str]]] = []

    def __call__(self, argv: List[str], stdin: Optional[str]) -> Tuple[int, str, str]:
        self.calls.append((argv, stdin))
        return self.answers.pop(0)


def test_read_missing_table():
    runner = Scripted((1, "", "Error: No such file or directory\nlist table inet haecs\n"))
    state = Nft("/usr/sbin/nft", runner).read_table(INET)
    assert not state.exists
    assert runner.calls[0][0] == ["/usr/sbin/nft", "-j", "list", "table", "inet", "haecs"]


def test_read_fetches_text_for_foreign_rules():
    listing = "\t\tcounter packets 0 bytes 0 # handle 7\n"
    runner = Scripted((0, json.dumps(LISTING), ""), (0, listing, ""))
    state = Nft("nft", runner).read_table(INET)
    assert state.rules[3].text == "counter packets 0 bytes 0"
    assert runner.calls[1][0] == ["nft", "-a", "list", "table", "inet", "haecs"]


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ((1, "", "Error: Operation not permitted"), "needs root"),
        ((1, "", "nft: unrecognized option '--json'"), "without JSON support"),
        ((1, "", "Error: JSON support not compiled-in"), "without JSON support"),
        ((1, "", "Error: something odd"), "nft failed: Error: something odd"),
        ((1, "", ""), "(no message)"),
        ((0, "not json", ""), "printed no JSON"),
    ],
)
def test_read_errors(answer, fragment):
    with pytest.raises(NftError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Nft("nft", Scripted(answer)).read_table(INET)


def test_apply_sends_one_batch_and_check_flag():
    the_plan = plan(TableState(INET), parse_desired(rules=[WEB]))
    runner = Scripted((0, "", ""), (0, "", ""))
    nft = Nft("nft", runner)
    nft.apply(the_plan, check=True)
    nft.apply(the_plan)
    assert runner.calls[0][0] == ["nft", "-j", "-c", "-f", "-"]
    assert runner.calls[1][0] == ["nft", "-j", "-f", "-"]
    assert json.loads(runner.calls[1][1] or "") == the_plan.batch()
    nft.apply(
        plan(TableState(INET), Desired(table=INET, state="absent"))
    )  # nothing to send: no call
    assert len(runner.calls) == 2


@pytest.mark.parametrize(
    ("err", "table", "fragment"),
    [
        (
            "Error: Could not process rule: Operation not supported",
            "inet haecs",
            "no nf_tables support for the inet family (CONFIG_NF_TABLES_INET",
        ),
        (
            "Error: Could not process rule: Protocol not supported",
            "ip haecs",
            "CONFIG_NF_TABLES_IPV4",
        ),
        (
            "Error: Could not process rule: Address family not supported by protocol",
            "ip6 haecs",
            "CONFIG_NF_TABLES_IPV6",
        ),
    ],
)
def test_apply_explains_missing_family(err, table, fragment):
    desired = parse_desired(rules=[], table=table)
    with pytest.raises(NftError) as caught:
        Nft("nft", Scripted((1, "", err))).apply(plan(TableState(desired.table), desired))
    assert fragment in str(caught.value)
    assert "nothing was changed" in str(caught.value)


def test_apply_unsupported_rule_on_existing_table():
    ruleset = FakeRuleset()
    converge(ruleset, rules=[])
    desired = parse_desired(rules=[WEB])
    the_plan = plan(Nft("nft", ruleset.runner).read_table(INET), desired)
    with pytest.raises(NftError, match="does not support nf_tables"):
        Nft("nft", Scripted((1, "", "Error: Operation not supported"))).apply(the_plan, check=True)


def test_subprocess_runner_runs_a_program():
    from ansible_collections.haecs.lvs.plugins.module_utils.nft.apply import subprocess_runner

    assert subprocess_runner(["cat"], "hello") == (0, "hello", "")


def test_explain_busy_and_aborted_batch_noise():
    err = (
        "internal:0:0-0: Error: Could not process rule: Device or resource busy\n\n"
        "internal:0:0-0: Error: Could not process rule: No such file or directory\n"
        "internal:0:0-0: Error: Could not process rule: No such file or directory\n"
    )
    with pytest.raises(NftError) as caught:
        Nft("nft", Scripted((1, "", err))).apply(plan(TableState(INET), parse_desired(rules=[WEB])))
    assert str(caught.value) == (
        "applying the change failed, nothing was changed: the kernel refused to delete an object still in use "
        "(a chain referenced by a jump or a verdict map in the table): "
        "Error: Could not process rule: Device or resource busy (and 2 more errors in the aborted batch)"
    )
