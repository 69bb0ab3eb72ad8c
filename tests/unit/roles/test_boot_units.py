"""The boot units the director and real_server roles install: rendered from
the roles' own templates, they say what the boot must do and pass
`systemd-analyze verify`."""

from __future__ import annotations

import pathlib
from typing import Any

import jinja2
import pytest
from unit_files import needs_systemd_analyze, verify

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"


def render(role: str, name: str, **variables: Any) -> str:
    source = (ROLES / role / "templates" / name).read_text()
    template = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    ).from_string(source)
    return template.render(ansible_managed="Ansible managed", **variables)


DIRECTOR = render(
    "director",
    "haecs-director.service.j2",
    director_vips=[
        {"address": "192.0.2.10", "interface": "eth0"},
        {"address": "2001:db8::10", "interface": "eth0"},
    ],
    director_rules_file="/etc/ipvsadm.rules",
    director_marks=[{"mark": 42, "destination": "192.0.2.20", "ports": [80, 443]}],
    director_marks_file="/etc/haecs/director-marks.json",
    director_ipvs_timeouts={"tcp": 120, "udp": 60},
)
DIRECTOR_WITHOUT_MARKS = render(
    "director",
    "haecs-director.service.j2",
    director_vips=[{"address": "192.0.2.10", "interface": "eth0"}],
    director_rules_file="/etc/ipvsadm.rules",
    director_marks=[],
    director_marks_file="/etc/haecs/director-marks.json",
    director_ipvs_timeouts={},
)
REAL_SERVER = render(
    "real_server",
    "haecs-real-server.service.j2",
    real_server_vips=[
        {"address": "192.0.2.11", "forwarding": "route"},
        {"address": "192.0.2.12", "forwarding": "tunnel"},
    ],
    real_server_gateways=["10.10.0.1", "fd00:10::1"],
)


def test_the_director_unit_puts_the_vips_marks_and_timeouts_back_then_restores_the_table() -> None:
    lines = DIRECTOR.splitlines()
    starts = [line for line in lines if line.startswith("ExecStart=")]
    assert starts == [
        "ExecStart=/usr/sbin/ip address replace 192.0.2.10/32 dev eth0",
        "ExecStart=/usr/sbin/ip address replace 2001:db8::10/128 dev eth0",
        "ExecStart=/usr/sbin/nft -j -f /etc/haecs/director-marks.json",
        # tcp_fin not given: 0 keeps the kernel's value.
        "ExecStart=/usr/sbin/ipvsadm --set 120 0 60",
        "ExecStart=/usr/sbin/ipvsadm-restore",
    ]
    assert "StandardInput=file:/etc/ipvsadm.rules" in lines
    assert "WantedBy=multi-user.target" in lines
    after = next(line for line in lines if line.startswith("After="))
    # The distribution's nftables.service flushes the ruleset: the marks go in after it.
    assert "systemd-sysctl.service" in after and "nftables.service" in after
    without = [
        line for line in DIRECTOR_WITHOUT_MARKS.splitlines() if line.startswith("ExecStart=")
    ]
    assert not any("nft" in line for line in without)
    # No timeouts given (the default {}): the boot leaves the kernel's alone.
    assert not any("--set" in line for line in without)


def test_the_real_server_unit_puts_the_vips_and_the_route_back() -> None:
    starts = [line for line in REAL_SERVER.splitlines() if line.startswith("ExecStart=")]
    assert starts == [
        "ExecStart=/usr/sbin/ip address replace 192.0.2.11/32 dev lo",
        "ExecStart=/usr/sbin/ip address replace 192.0.2.12/32 dev tunl0",
        "ExecStart=/usr/sbin/ip -4 route replace default via 10.10.0.1",
        "ExecStart=/usr/sbin/ip -6 route replace default via fd00:10::1",
    ]


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("name", "text"),
    [("haecs-director.service", DIRECTOR), ("haecs-real-server.service", REAL_SERVER)],
)
def test_the_units_verify(tmp_path: Any, name: str, text: str) -> None:
    # verify wants every executable to exist: ipvsadm may not be installed here.
    for program in ("/usr/sbin/ipvsadm-restore", "/usr/sbin/ipvsadm"):
        if not pathlib.Path(program).exists():
            text = text.replace(program + " ", "/usr/bin/true ").replace(
                program + "\n", "/usr/bin/true\n"
            )
    rules = tmp_path / "ipvsadm.rules"
    rules.write_text("")
    unit = tmp_path / name
    marks = tmp_path / "director-marks.json"
    marks.write_text("{}")
    unit.write_text(
        text.replace("/etc/ipvsadm.rules", str(rules)).replace(
            "/etc/haecs/director-marks.json", str(marks)
        )
    )
    verify(str(unit))
