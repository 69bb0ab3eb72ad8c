"""Omitted means unchanged on an existing entry, default on a new one.

For every non-key option of ipvs_service, ipvs_real_server and ipvs_table
(state merged): an entry is made with a non-default value, then a task that
omits the option runs through the module's own code against the kernel.
The task reports no change and `ipvsadm -Sn` (plus `--thresholds`) is
unchanged; a task that omits it but changes something else keeps it too.
States replaced and overridden keep "exactly as declared": defaults apply.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from conftest import ipvsadm, saved_table

from ansible_collections.haecs.lvs.plugins.modules import (
    ipvs_real_server,
    ipvs_service,
    ipvs_table,
)

Params = Dict[str, Any]


class Module:
    """What the modules' run_module uses of AnsibleModule; params validated by Ansible."""

    def __init__(self, spec: Params, params: Params, check_mode: bool = False) -> None:
        validated = ArgumentSpecValidator(spec).validate(params)
        assert not validated.error_messages, validated.error_messages
        self.params = validated.validated_parameters
        self.check_mode = check_mode
        self._diff = True

    def warn(self, message: str) -> None:
        raise AssertionError("unexpected warning: %s" % message)


def run(module_file: Any, params: Params, check_mode: bool = False) -> Params:
    module = Module(module_file.argument_spec(), params, check_mode)
    result: Params = module_file.run_module(module)
    return result


def kernel_view() -> List[str]:
    """ipvsadm -Sn and the thresholds it leaves out: the independent witness."""
    return saved_table() + ipvsadm("-Ln", "--thresholds").splitlines()


def unchanged_by(module_file: Any, params: Params) -> None:
    """`params` changes nothing: check mode and a real run say so, the kernel agrees."""
    before = kernel_view()
    assert run(module_file, params, check_mode=True)["changed"] is False
    result = run(module_file, params)
    assert result["changed"] is False, result["operations"]
    assert result["operations"] == []
    assert kernel_view() == before


UDP53: Params = {"protocol": "udp", "address": "192.0.2.10", "port": 53}
V6: Params = {"protocol": "tcp", "address": "2001:db8::10", "port": 443}

# option: (the service made with a non-default value, the task that omits it,
#          another change for the same task, the -Sn line after that change)
SERVICE_CASES: Dict[str, Tuple[Params, Params, Params, str]] = {
    "scheduler": (
        dict(UDP53, scheduler="sh"),
        dict(UDP53),
        {"one_packet": True},
        "-A -u 192.0.2.10:53 -s sh -o",
    ),
    "scheduler_flags": (
        dict(UDP53, scheduler="sh", scheduler_flags=["sh-fallback", "sh-port"]),
        dict(UDP53, scheduler="sh"),
        {"one_packet": True},
        "-A -u 192.0.2.10:53 -s sh -o -b sh-fallback,sh-port",
    ),
    "one_packet": (
        dict(UDP53, one_packet=True),
        dict(UDP53),
        {"scheduler": "rr"},
        "-A -u 192.0.2.10:53 -s rr -o",
    ),
    "persistence_timeout": (
        dict(UDP53, persistence_timeout=600),
        dict(UDP53),
        {"scheduler": "rr"},
        "-A -u 192.0.2.10:53 -s rr -p 600",
    ),
    "persistence_netmask": (
        dict(UDP53, persistence_timeout=600, persistence_netmask="255.255.255.0"),
        dict(UDP53),
        {"persistence_timeout": 60},
        "-A -u 192.0.2.10:53 -s wlc -p 60 -M 255.255.255.0",
    ),
    "persistence_prefix_length": (
        dict(V6, persistence_timeout=600, persistence_prefix_length=64),
        dict(V6, persistence_timeout=600),
        {"scheduler": "lc"},
        "-A -t [2001:db8::10]:443 -s lc -p 600 -M 64",
    ),
    "persistence_engine": (
        dict(UDP53, persistence_timeout=60, persistence_engine="sip"),
        dict(UDP53),
        {"scheduler": "rr"},
        "-A -u 192.0.2.10:53 -s rr -p 60 --pe sip",
    ),
}


@pytest.mark.parametrize("option", sorted(SERVICE_CASES))
def test_service_option_survives_a_task_that_omits_it(clean_table: None, option: str) -> None:
    made, task, other, line = SERVICE_CASES[option]
    assert option in made and option not in task
    assert run(ipvs_service, made)["changed"] is True
    unchanged_by(ipvs_service, task)
    result = run(ipvs_service, dict(task, **other))
    assert result["changed"] is True
    assert result["operations"][0].startswith("-E ")
    assert saved_table() == [line]
    unchanged_by(ipvs_service, dict(task, **other))


def test_service_defaults_apply_on_creation(clean_table: None) -> None:
    result = run(ipvs_service, dict(UDP53))
    assert result["operations"] == ["-A -u 192.0.2.10:53 -s wlc"]
    assert saved_table() == ["-A -u 192.0.2.10:53 -s wlc"]


def test_service_explicit_values_still_reset(clean_table: None) -> None:
    """Omitted keeps; given resets: [] flags, false, 0 timeout, engine none."""
    run(
        ipvs_service,
        dict(UDP53, scheduler="sh", scheduler_flags=["sh-port"], one_packet=True,
             persistence_timeout=60, persistence_engine="sip"),
    )  # fmt: skip
    run(ipvs_service, dict(UDP53, persistence_engine="none"))
    assert saved_table() == ["-A -u 192.0.2.10:53 -s sh -p 60 -o -b sh-port"]
    run(ipvs_service, dict(UDP53, scheduler_flags=[], one_packet=False, persistence_timeout=0))
    assert saved_table() == ["-A -u 192.0.2.10:53 -s sh"]
    # A new scheduler drops the old one's flags (they mean nothing to it).
    run(ipvs_service, dict(UDP53, scheduler_flags=["sh-port"]))
    run(ipvs_service, dict(UDP53, scheduler="mh"))
    assert saved_table() == ["-A -u 192.0.2.10:53 -s mh"]


TCP80: Params = {"address": "192.0.2.10", "port": 80}
GUE: Params = {"forwarding": "tunnel", "tunnel_type": "gue", "tunnel_port": 6080}

# option: (the real server made with a non-default value, the task that omits
#          it, another change for the same task, its -Sn line after that)
REAL_SERVER_CASES: Dict[str, Tuple[Params, Params, Params, str]] = {
    "forwarding": (
        {"address": "192.0.2.21", "forwarding": "masq"},
        {"address": "192.0.2.21"},
        {"weight": 0},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 0",
    ),
    "weight": (
        {"address": "192.0.2.21", "weight": 65535},
        {"address": "192.0.2.21"},
        {"forwarding": "masq"},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 65535",
    ),
    "upper_threshold": (
        {"address": "192.0.2.21", "upper_threshold": 100},
        {"address": "192.0.2.21"},
        {"weight": 3},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 3",
    ),
    "lower_threshold": (
        {"address": "192.0.2.21", "upper_threshold": 100, "lower_threshold": 10},
        {"address": "192.0.2.21", "upper_threshold": 100},
        {"weight": 3},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 3",
    ),
    "tunnel_type": (
        dict(GUE, address="192.0.2.21"),
        {"address": "192.0.2.21", "tunnel_port": 6080},
        {"weight": 3},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -i -w 3 --tun-type gue --tun-port 6080 --tun-nocsum",
    ),
    "tunnel_port": (
        dict(GUE, address="192.0.2.21"),
        {"address": "192.0.2.21", "forwarding": "tunnel", "tunnel_type": "gue"},
        {"weight": 3},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -i -w 3 --tun-type gue --tun-port 6080 --tun-nocsum",
    ),
    "tunnel_checksum": (
        {"address": "192.0.2.21", "forwarding": "tunnel", "tunnel_type": "gre",
         "tunnel_checksum": "csum"},
        {"address": "192.0.2.21", "forwarding": "tunnel"},
        {"weight": 3},
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -i -w 3 --tun-type gre --tun-csum",
    ),
}  # fmt: skip


def make_service(params: Params) -> None:
    assert run(ipvs_service, params)["changed"] is True


@pytest.mark.parametrize("option", sorted(REAL_SERVER_CASES))
def test_real_server_option_survives_a_task_that_omits_it(clean_table: None, option: str) -> None:
    made, task, other, line = REAL_SERVER_CASES[option]
    assert option in made and option not in task
    make_service(dict(TCP80, scheduler="rr"))
    assert run(ipvs_real_server, dict(made, virtual_service=TCP80))["changed"] is True
    made_thresholds = ipvsadm("-Ln", "--thresholds")
    unchanged_by(ipvs_real_server, dict(task, virtual_service=TCP80))
    result = run(ipvs_real_server, dict(task, virtual_service=TCP80, **other))
    assert result["changed"] is True
    assert result["operations"][0].startswith("-e ")
    assert saved_table() == ["-A -t 192.0.2.10:80 -s rr", line]
    if "threshold" in option:
        # The thresholds are still those it was made with.
        after = ipvsadm("-Ln", "--thresholds").splitlines()
        # Columns: -> address Uthreshold Lthreshold ActiveConn InActConn
        kept = [row.split()[2:4] for row in after if "192.0.2.21" in row]
        assert kept == [["100", "0" if option == "upper_threshold" else "10"]]
        assert kept == [
            row.split()[2:4] for row in made_thresholds.splitlines() if "192.0.2.21" in row
        ]
    unchanged_by(ipvs_real_server, dict(task, virtual_service=TCP80, **other))


def test_drain_with_only_address_and_weight(clean_table: None) -> None:
    """The README's drain: key and weight 0, on a masq server, mapped port or not."""
    make_service(dict(TCP80, scheduler="rr"))
    for address, port in (("192.0.2.21", 80), ("192.0.2.22", 8080)):
        params = {"virtual_service": TCP80, "address": address, "port": port, "forwarding": "masq"}
        run(ipvs_real_server, dict(params, weight=5))
    for address in ("192.0.2.21", "192.0.2.22"):
        drain = {"virtual_service": TCP80, "address": address, "weight": 0}
        assert run(ipvs_real_server, drain, check_mode=True)["changed"] is True
        result = run(ipvs_real_server, drain)
        assert result["changed"] is True
        assert result["real_server"]["forwarding"] == "masq"
        unchanged_by(ipvs_real_server, drain)
    assert saved_table() == [
        "-A -t 192.0.2.10:80 -s rr",
        "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 0",
        "-a -t 192.0.2.10:80 -r 192.0.2.22:8080 -m -w 0",
    ]


def test_real_server_defaults_apply_when_added(clean_table: None) -> None:
    make_service(dict(TCP80, scheduler="rr"))
    result = run(ipvs_real_server, {"virtual_service": TCP80, "address": "192.0.2.21"})
    assert result["operations"] == ["-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 1"]
    # A new server with a mapped port and no forwarding is route: refused, nothing made.
    with pytest.raises(ValueError, match="port: must equal the service port"):
        run(ipvs_real_server, {"virtual_service": TCP80, "address": "192.0.2.22", "port": 8080})
    assert len(saved_table()) == 2


def test_port_omitted_with_two_servers_at_the_address_is_refused(clean_table: None) -> None:
    make_service(dict(TCP80, scheduler="rr"))
    for port in (8080, 8081):
        run(ipvs_real_server, {"virtual_service": TCP80, "address": "192.0.2.21", "port": port,
                               "forwarding": "masq"})  # fmt: skip
    before = kernel_view()
    with pytest.raises(ValueError, match=r"port: is required: .* \(ports 8080, 8081\)"):
        run(ipvs_real_server, {"virtual_service": TCP80, "address": "192.0.2.21", "weight": 0})
    assert kernel_view() == before


def table_task(services: List[Params], state: str = "merged") -> Params:
    return {"state": state, "services": services}


@pytest.mark.parametrize("option", sorted(SERVICE_CASES))
def test_table_merged_service_option_survives(clean_table: None, option: str) -> None:
    made, task, other, line = SERVICE_CASES[option]
    assert run(ipvs_table, table_task([made]))["changed"] is True
    unchanged_by(ipvs_table, table_task([task]))
    assert run(ipvs_table, table_task([dict(task, **other)]))["changed"] is True
    assert saved_table() == [line]


@pytest.mark.parametrize("option", sorted(REAL_SERVER_CASES))
def test_table_merged_real_server_option_survives(clean_table: None, option: str) -> None:
    made, task, other, line = REAL_SERVER_CASES[option]
    service = dict(TCP80, scheduler="rr")
    assert run(ipvs_table, table_task([dict(service, real_servers=[made])]))["changed"] is True
    unchanged_by(ipvs_table, table_task([dict(TCP80, real_servers=[task])]))
    result = run(ipvs_table, table_task([dict(TCP80, real_servers=[dict(task, **other)])]))
    assert result["changed"] is True
    assert saved_table() == ["-A -t 192.0.2.10:80 -s rr", line]


@pytest.mark.parametrize("state", ["replaced", "overridden"])
def test_table_replaced_and_overridden_are_exactly_as_declared(
    clean_table: None, state: str
) -> None:
    made = dict(UDP53, scheduler="sh", scheduler_flags=["sh-port"], persistence_timeout=60,
                real_servers=[{"address": "192.0.2.21", "port": 5353, "forwarding": "masq",
                               "weight": 7, "upper_threshold": 9}])  # fmt: skip
    run(ipvs_table, table_task([made]))
    declared = dict(UDP53, real_servers=[{"address": "192.0.2.21"}])
    result = run(ipvs_table, table_task([declared], state))
    assert result["changed"] is True
    # Defaults for everything omitted; the port-5353 server is not the declared one.
    assert saved_table() == [
        "-A -u 192.0.2.10:53 -s wlc",
        "-a -u 192.0.2.10:53 -r 192.0.2.21:53 -g -w 1",
    ]
    unchanged_by(ipvs_table, table_task([declared], state))
