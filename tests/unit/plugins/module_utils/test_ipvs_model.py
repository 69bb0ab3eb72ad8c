"""The table's value types: what equality and hashing compare, copies, pickling,
the order of ipvsadm's lines, and the engine's import staying light."""

from __future__ import annotations

import ipaddress
import pickle
import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import model
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Stats,
    VirtualService,
    service_order,
    table_lines,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import ADD_SERVICE, Operation

WEB = ServiceKey.for_address("tcp", "10.0.0.1", 80)


def test_real_servers_compare_and_hash_without_their_counters() -> None:
    quiet = RealServer("10.1.0.1", 80, "masq", 5)
    busy = RealServer("10.1.0.1", 80, "masq", 5, 0, 0, "ipip", 0, "none", 7, 3, 1, Stats(9))
    assert quiet == busy
    assert (quiet != busy) is False
    assert hash(quiet) == hash(busy)
    assert quiet != quiet.replace(weight=0)
    assert len({quiet, busy, quiet.replace(weight=0)}) == 2


def test_services_compare_without_stats_and_keep_one_form_of_the_mask() -> None:
    plain = Service(WEB, "rr", persistence_timeout=300, persistence_prefix=24)
    assert plain == Service(
        WEB, "rr", persistence_timeout=300, persistence_prefix=24, stats=Stats(1)
    )
    # A full-length mask and the mask of a non-persistent service are no mask.
    assert Service(WEB, persistence_timeout=300, persistence_prefix=32).persistence_prefix is None
    assert Service(WEB, persistence_prefix=24).persistence_prefix is None
    # replace goes through the same normalising as the constructor
    assert plain.replace(persistence_timeout=None).persistence_prefix is None


def test_values_of_different_types_are_never_equal() -> None:
    server = RealServer("10.1.0.1", 80)
    assert server != ("10.1.0.1", 80)
    assert WEB != ("ipv4", "tcp", "10.0.0.1", 80, 0)
    assert Operation(ADD_SERVICE, Service(WEB)) != Service(WEB)


def test_replace_refuses_a_field_it_does_not_have() -> None:
    with pytest.raises(TypeError, match="RealServer has no field \\['wieght'\\]"):
        RealServer("10.1.0.1", 80).replace(wieght=0)


def test_values_survive_pickling_with_a_new_hash_seed() -> None:
    """The monitor hands these between processes; a key's cached hash must be
    the receiving process's, not the sender's (string hashes are seeded)."""
    entry = VirtualService(Service(WEB, "wrr"), {("10.1.0.1", 80): RealServer("10.1.0.1", 80)})
    script = (
        "import pickle, sys\n"
        "key, entry = pickle.loads(sys.stdin.buffer.read())\n"
        "assert {key: 1}[key.replace()] == 1\n"
        "assert entry.key == key and hash(entry.service) == hash(entry.service.replace())\n"
        "print(repr(entry))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps((WEB, entry)),
        capture_output=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": ":".join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == repr(entry)


def test_values_pickle_as_their_constructor_arguments() -> None:
    """Compact, and rebuilt through __init__ (so normalised and hashed anew)."""
    server = RealServer("10.1.0.1", 80, "masq", 3, 0, 0, "ipip", 0, "none", 1, 2, 3, Stats(4))
    assert server.__reduce__() == (
        RealServer,
        ("10.1.0.1", 80, "masq", 3, 0, 0, "ipip", 0, "none", 1, 2, 3, Stats(4)),
    )
    copy = pickle.loads(pickle.dumps(server))
    assert copy.as_dict() == server.as_dict()
    assert WEB.__reduce__() == (ServiceKey, ("ipv4", "tcp", "10.0.0.1", 80, 0))


def test_a_real_servers_key_is_made_once() -> None:
    """The monitor keys several tables of tens of thousands of servers by
    it: one tuple per server, not one per table."""
    server = RealServer("10.1.0.1", 8080, "masq", 3)
    assert server.key == ("10.1.0.1", 8080) and server.key is server.key
    changed = server.replace(weight=4)
    assert changed.key == server.key and changed.key is not server.key
    assert pickle.loads(pickle.dumps(server)).key == server.key


def test_repr_names_every_field_in_order() -> None:
    assert repr(WEB) == (
        "ServiceKey(family='ipv4', protocol='tcp', address='10.0.0.1', port=80, fwmark=0)"
    )
    assert repr(Stats()).startswith("Stats(connections=0, packets_in=0,")


def test_service_keys_sort_by_their_fields() -> None:
    keys = [
        ServiceKey.for_address("udp", "10.0.0.1", 53),
        ServiceKey.for_fwmark(7),
        WEB,
        ServiceKey.for_address("tcp", "10.0.0.1", 8),
    ]
    assert sorted(keys) == sorted(keys, key=lambda key: key._compared())
    key, same = WEB, WEB.replace()
    assert key <= same and key >= same
    assert (key < same, key > same) == (False, False)


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30, unique=True), st.randoms())
def test_lines_follow_the_numeric_order_of_addresses(
    addresses: list, shuffle: random.Random
) -> None:
    """Services and real servers are listed by address as numbers, IPv4 first
    (what sorting with ipaddress gave), whatever the order of the dict."""
    texts = [str(ipaddress.IPv4Address(number)) for number in addresses]
    texts += [str(ipaddress.IPv6Address(number << 64)) for number in addresses]
    servers = {(text, 80): RealServer(text, 80, "masq") for text in texts}
    keys = [ServiceKey.for_address("tcp", text, 80) for text in texts]
    shuffle.shuffle(keys)
    table = {key: VirtualService(Service(key), dict(servers)) for key in keys}

    numeric = sorted(
        texts, key=lambda text: (ipaddress.ip_address(text).version, ipaddress.ip_address(text))
    )
    lines = table_lines(table)
    service_lines = [line for line in lines if line.startswith("-A")]
    assert [line.split()[2].rsplit(":", 1)[0].strip("[]") for line in service_lines] == numeric
    first_servers = lines[1 : 1 + len(texts)]
    assert [line.split()[4].rsplit(":", 1)[0].strip("[]") for line in first_servers] == numeric
    assert sorted(keys, key=service_order) == [
        ServiceKey.for_address("tcp", text, 80) for text in numeric
    ]


def test_the_engine_imports_only_what_a_read_runs() -> None:
    """A whole-process read pays for every import.  `dataclasses` pulls in
    `inspect` (about 0.2 s a process in the test kernel); `typing` (with `re`
    and `collections`), `socket` (its enums) and `ipaddress` were 0.08 s of a
    1 s read of 11,000 entries there.  `-S`: nothing imported before ours."""
    unwanted = {
        "dataclasses",
        "inspect",
        "typing",
        "re",
        "collections",
        "functools",
        "socket",
        "enum",
        "selectors",
        "ipaddress",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import sys\n"
            "import ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine\n"
            "print(sorted(set(sys.argv[1:]) & set(sys.modules)))",
            *sorted(unwanted),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(lambda number: str(ipaddress.IPv4Address(number))),
        st.lists(st.integers(0, 300), min_size=1, max_size=5).map(
            lambda octets: ".".join("%d" % octet for octet in octets)
        ),
        st.from_regex(r"\A[0-9.]{1,16}\Z"),
        st.integers(0, 2**128 - 1).map(lambda number: str(ipaddress.IPv6Address(number))),
        st.text(max_size=20),
    )
)
def test_parse_address_says_what_ipaddress_says(text: str) -> None:
    """The IPv4 path that skips ipaddress gives its answer, or its error."""
    model._PARSED_ADDRESSES.pop(text, None)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        with pytest.raises(ValueError):
            model.parse_address(text)
        return
    expected = (
        address.compressed,
        "ipv%d" % address.version,
        not (address.is_multicast or address.is_unspecified),
    )
    assert model.parse_address(text) == expected


def test_parse_address_keeps_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_PARSED_ADDRESSES", {})
    monkeypatch.setattr(model, "_PARSED_ADDRESSES_KEPT", 2)
    texts = ["10.0.0.1", "2001:DB8::0:1", "224.0.0.1"]
    expected = [
        ("10.0.0.1", "ipv4", True),
        ("2001:db8::1", "ipv6", True),
        ("224.0.0.1", "ipv4", False),
    ]
    assert [model.parse_address(text) for text in texts] == expected
    assert [model.parse_address(text) for text in texts] == expected
    assert sorted(model._PARSED_ADDRESSES) == ["10.0.0.1", "2001:DB8::0:1"]
    with pytest.raises(ValueError):
        model.parse_address("10.0.0.256")
