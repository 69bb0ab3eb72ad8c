"""The ipvsadm rules reader: what ipvsadm -Sn prints reads back as the same table."""

from __future__ import annotations

from typing import Dict, List

import pytest

from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_table_params import parse_table
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import table_lines
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import ValidationError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.rules import locate, parse_rules

SAVED = """\
-A -t 192.0.2.10:80 -s wrr
-a -t 192.0.2.10:80 -r 10.10.2.11:8080 -m -w 3
-a -t 192.0.2.10:80 -r 10.10.2.12:8080 -m -w 0
-A -u 192.0.2.10:53 -s sh -p 60 --pe sip -o -b sh-fallback,sh-port
-a -u 192.0.2.10:53 -r 10.10.2.13:53 -g -w 65535
-A -t 192.0.2.10:443 -s wlc -p 600 -M 255.255.255.0
-a -t 192.0.2.10:443 -r [2001:db8::21]:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-A -f 42 -s sh -p 300 -b sh-port
-a -f 42 -r 10.10.2.21:0 -g -w 1
-A -f 7 -6 -s mh -p 60 -M 64
-a -f 7 -6 -r [2001:db8::22]:0 -g -w 1
-A -t [2001:db8::10]:80 -s rr
-a -t [2001:db8::10]:80 -r [2001:db8::23]:80 -i -w 1 --tun-type gre --tun-nocsum
"""


def test_saved_lines_read_back_as_the_same_lines() -> None:
    services, lines = parse_rules(SAVED, "t")
    table, _listed = parse_table(services)
    assert sorted(table_lines(table)) == sorted(SAVED.splitlines())
    assert lines == list(range(1, 14))


def test_thresholds_comments_and_blank_lines() -> None:
    text = "# boot table\n\n-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.2 -g -w 2 -x 100 -y 10\n"
    services, lines = parse_rules(text, "t")
    assert services == [
        {"protocol": "tcp", "address": "192.0.2.10", "port": 80, "scheduler": "rr",
         "real_servers": [{"address": "10.0.0.2", "forwarding": "route", "weight": 2,
                           "upper_threshold": 100, "lower_threshold": 10}]},
    ]  # fmt: skip
    assert lines == [3, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-E -t 192.0.2.10:80 -s rr", "t:1: only -A and -a lines are allowed"),
        ("-A -s rr", "t:1: names no service"),
        ("-A -t 192.0.2.10 -s rr", "t:1: needs ADDRESS:PORT"),
        ("-A -t 192.0.2.10:80 -s", "t:1: -s needs a value"),
        ("-A -t 192.0.2.10:80 -p x", "t:1: -p needs a number"),
        ("-A -t 192.0.2.10:80 --frob", "t:1: unknown service option '--frob'"),
        ("-a -t 192.0.2.10:80 -r 10.0.0.2", "t:1: real server of a service not added above"),
        ("-A -t 192.0.2.10:80\n-A -t 192.0.2.10:80", "t:2: adds a service twice"),
        ("-A -t 192.0.2.10:80\n-a -t 192.0.2.10:80 -w 1", "t:2: needs -r"),
        (
            "-A -t 192.0.2.10:80\n-a -t 192.0.2.10:80 -r 1.2.3.4 -q",
            "t:2: unknown real server option",
        ),
    ],
)
def test_bad_lines_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rules(text, "t")
    assert str(caught.value).startswith(message)


def test_validation_errors_are_located_on_their_line() -> None:
    text = "-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.2 -g\n-A -u 192.0.2.10:53\n-a -u 192.0.2.10:53 -r 10.0.0.3 -m -w 70000\n"
    services, lines = parse_rules(text, "t")
    with pytest.raises(ValidationError) as caught:
        parse_table(services)
    located = locate(caught.value, "t", lines, services)
    assert str(located).startswith("t:4: weight: must be an integer from 0 to 65535")
    service_error = ValidationError("services[1]", "duplicates services[0]")
    assert str(locate(service_error, "t", lines, services)) == "t:3: duplicates services[0]"
    other = ValidationError("src", "x")
    assert locate(other, "t", lines, services) is other


def test_empty_file_is_an_empty_table() -> None:
    services: List[Dict[str, object]]
    services, lines = parse_rules("# nothing\n", "t")
    assert (services, lines) == ([], [])
