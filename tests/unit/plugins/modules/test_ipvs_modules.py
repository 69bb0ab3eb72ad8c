"""The module glue (ipvs_module) and the three modules' logic, with IPVS faked.

No kernel: a FakeIPVS holds a table, applies operations with the planner's
own simulate, and can refuse like the kernel.  The modules are driven through
their run_module / main with a fake AnsibleModule.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Dict, List, Optional

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.haecs.lvs.plugins.module_utils import _ipvs_module as ipvs_module
from ansible_collections.haecs.lvs.plugins.module_utils._failing import failing_cleanly
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.config import KernelConfigError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.genl import NetlinkError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.kmod import KernelModuleError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    RealServer,
    Service,
    ServiceKey,
    Stats,
    Table,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.params import (
    REAL_SERVER_FIELDS,
    SERVICE_FIELDS,
    ValidationError,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import Operation, simulate
from ansible_collections.haecs.lvs.plugins.module_utils.nft.model import NftError, PlanError
from ansible_collections.haecs.lvs.plugins.module_utils.vip_address import MissingLibrary, VipError
from ansible_collections.haecs.lvs.plugins.modules import (
    ipvs_info,
    ipvs_real_server,
    ipvs_service,
    ipvs_table,
)

WEB = ServiceKey.for_address("tcp", "192.0.2.10", 80)
DNS = ServiceKey.for_address("udp", "192.0.2.10", 53)
MARK = ServiceKey.for_fwmark(7, "ipv6")


def web_table(weight: int = 1, active: int = 0) -> Table:
    server = RealServer("192.0.2.21", 80, "masq", weight, active_connections=active)
    return {WEB: VirtualService(Service(WEB, scheduler="rr"), {server.key: server})}


class FakeIPVS:
    """Stands in for ipvs_engine.IPVS: one shared table, every call recorded."""

    table: Table = {}
    applied: List[List[Operation]] = []
    reads = 0
    read_only: Optional[Collection[ServiceKey]] = None
    refuse: Optional[IPVSError] = None

    def __enter__(self) -> FakeIPVS:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def read(
        self, with_stats: bool = False, only: Optional[Collection[ServiceKey]] = None
    ) -> Table:
        type(self).reads += 1
        type(self).read_only = only
        return {
            key: VirtualService(e.service, dict(e.real_servers))
            for key, e in self.table.items()
            if only is None or key in only
        }

    def apply(self, operations: List[Operation]) -> None:
        if self.refuse is not None:
            raise self.refuse
        type(self).applied.append(list(operations))
        type(self).table = simulate(self.table, operations)

    def info(self) -> Dict[str, object]:
        return {"version": "1.2.1", "connection_table_size": 4096}


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> type:
    """A fresh FakeIPVS class patched in where the glue opens IPVS."""

    class Kernel(FakeIPVS):
        table: Table = {}
        applied: List[List[Operation]] = []
        reads = 0
        refuse: Optional[IPVSError] = None

    monkeypatch.setattr(ipvs_module, "IPVS", Kernel)
    return Kernel


class Exit(Exception):
    """What exit_json / fail_json raise in FakeModule."""

    def __init__(self, result: Dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result


class FakeModule:
    """Enough of AnsibleModule: params validated by Ansible's own validator."""

    def __init__(
        self,
        spec: Dict[str, Any],
        params: Dict[str, Any],
        check_mode: bool = False,
        diff: bool = False,
    ):
        validated = ArgumentSpecValidator(spec).validate(params)
        assert not validated.error_messages, validated.error_messages
        self.params = validated.validated_parameters
        self.check_mode = check_mode
        self._diff = diff
        self.warnings: List[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def fail_json(self, msg: str, **kwargs: Any) -> None:
        raise Exit(dict(kwargs, msg=msg, failed=True))

    def exit_json(self, **kwargs: Any) -> None:
        raise Exit(kwargs)


def service_module(params: Dict[str, Any], **kw: Any) -> FakeModule:
    return FakeModule(ipvs_service.argument_spec(), params, **kw)


def real_server_module(params: Dict[str, Any], **kw: Any) -> FakeModule:
    return FakeModule(ipvs_real_server.argument_spec(), params, **kw)


def run_main(
    module_file: Any, module: FakeModule, monkeypatch: pytest.MonkeyPatch
) -> Dict[str, Any]:
    monkeypatch.setattr(module_file, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(Exit) as exited:
        module_file.main()
    return exited.value.result


# ------------------------------------------------------------------ specs


def test_specs_use_the_parser_option_names() -> None:
    assert set(ipvs_module.service_spec()) == set(SERVICE_FIELDS)
    assert set(ipvs_module.real_server_spec()) == set(REAL_SERVER_FIELDS)


def test_specs_leave_parser_defaults_to_the_parser() -> None:
    for spec in (ipvs_module.service_spec(), ipvs_module.real_server_spec()):
        assert all("default" not in option for option in spec.values())


def test_spec_functions_return_copies() -> None:
    spec = ipvs_module.service_spec()
    spec["port"]["required"] = True
    assert "required" not in ipvs_module.service_spec()["port"]


def test_virtual_service_spec_nests_the_key() -> None:
    spec = ipvs_module.virtual_service_spec(required=False)["virtual_service"]
    assert spec["required"] is False
    assert set(spec["options"]) == {"protocol", "address", "port", "fwmark", "family"}


# ---------------------------------------------------------------- parsing


def test_parse_key_ignores_other_options() -> None:
    key = ipvs_module.parse_key({"address": "192.0.2.10", "port": 80, "scheduler": "nonsense"})
    assert key == WEB


def test_parse_key_prefixes_errors() -> None:
    with pytest.raises(ValidationError, match=r"^virtual_service\.port: "):
        ipvs_module.parse_key({"address": "192.0.2.10", "port": 70000}, "virtual_service")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"address": "192.0.2.21"}, ("192.0.2.21", 80)),
        ({"address": " 2001:DB8::1 ", "port": 8080}, ("2001:db8::1", 8080)),
    ],
)
def test_parse_real_server_key(params: Dict[str, Any], expected: Any) -> None:
    assert ipvs_module.parse_real_server_key(params, WEB) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"address": "nope"}, "address"),
        ({"address": None}, "address"),
        ({"address": "192.0.2.1", "port": 70000}, "port"),
    ],
)
def test_parse_real_server_key_rejects(params: Dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        ipvs_module.parse_real_server_key(params, WEB)
    assert error.value.field == field


def test_has_service_key() -> None:
    assert not ipvs_module.has_service_key({"stats": True, "address": None})
    assert ipvs_module.has_service_key({"fwmark": 7})


# -------------------------------------------------------------------- runs


def test_converge_without_operations_reads_once(kernel: type) -> None:
    kernel.table = web_table()
    run = ipvs_module.converge(lambda table: [], check_mode=False)
    assert not run.changed
    assert run.after is run.before
    assert kernel.reads == 1
    assert kernel.applied == []


def test_converge_check_mode_simulates(kernel: type) -> None:
    kernel.table = {}
    operations = [Operation("add_service", Service(WEB, scheduler="rr"))]
    run = ipvs_module.converge(lambda table: operations, check_mode=True)
    assert run.changed
    assert kernel.applied == []
    assert kernel.table == {}
    assert list(run.after) == [WEB]
    assert run.operation_lines() == ["-A -t 192.0.2.10:80 -s rr"]


def test_converge_applies_and_reads_back(kernel: type) -> None:
    kernel.table = {}
    operations = [Operation("add_service", Service(WEB))]
    run = ipvs_module.converge(lambda table: operations, check_mode=False)
    assert kernel.applied == [operations]
    assert kernel.reads == 2
    assert list(run.after) == [WEB]


def test_converge_reads_only_the_named_services(kernel: type) -> None:
    kernel.table = web_table()
    kernel.table[DNS] = VirtualService(Service(DNS))
    run = ipvs_module.converge(lambda table: [], check_mode=False, keys=[DNS])
    assert kernel.read_only == [DNS]
    assert list(run.before) == [DNS]


def test_service_diff_is_ipvsadm_text_of_one_service() -> None:
    before = web_table()
    after = web_table(weight=5)
    after[DNS] = VirtualService(Service(DNS))
    diff = ipvs_module.service_diff(ipvs_module.Run(before, after, []), WEB)
    assert (
        diff["before"]
        == "-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 1\n"
    )
    assert (
        diff["after"] == "-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 5\n"
    )
    assert "tcp 192.0.2.10:80" in diff["before_header"]


def test_changed_result_has_diff_only_in_diff_mode() -> None:
    run = ipvs_module.Run({}, web_table(), [Operation("add_service", Service(WEB, scheduler="rr"))])
    assert "diff" not in ipvs_module.changed_result(run, WEB, diff_mode=False)
    result = ipvs_module.changed_result(run, WEB, diff_mode=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == ""


def test_summaries_of_missing_entries_are_empty() -> None:
    assert ipvs_module.service_summary({}, WEB) == {}
    assert ipvs_module.real_server_summary(web_table(), WEB, ("192.0.2.99", 80)) == {}
    assert ipvs_module.real_server_summary(web_table(), WEB, ("192.0.2.21", 80))["weight"] == 1


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("error", "msg"),
    [
        (ValidationError("weight", "must be an integer"), "weight: must be an integer"),
        (IPVSError("kernel refused `-a`: No such process"), "kernel refused `-a`: No such process"),
        (
            KernelModuleError("cannot load kernel module ip_vs_xx"),
            "cannot load kernel module ip_vs_xx",
        ),
        (
            ipvs_module.ServiceMissing(WEB),
            "virtual service tcp 192.0.2.10:80 does not exist; create it with haecs.lvs.ipvs_service",
        ),
        (NetlinkError(1), "IPVS netlink request failed: Operation not permitted"),
        (KernelConfigError("the kernel refused the daemon"), "the kernel refused the daemon"),
        (VipError("sysctl: permission denied"), "sysctl: permission denied"),
        (NftError("nft: not found"), "nft: not found"),
        (PlanError("a rule differs"), "a rule differs"),
        (
            MissingLibrary("pyroute2", ImportError("no module")),
            "Failed to import the required Python library (pyroute2)",
        ),
    ],
)
def test_failing_cleanly_turns_our_errors_into_fail_json(error: Exception, msg: str) -> None:
    module = FakeModule({}, {})
    with pytest.raises(Exit) as exited, failing_cleanly(module):
        raise error
    assert exited.value.result["msg"].startswith(msg)
    assert exited.value.result["failed"] is True


def test_failing_cleanly_adds_the_option_and_the_context() -> None:
    module = FakeModule({}, {})
    with pytest.raises(Exit) as exited, failing_cleanly(module, table="inet haecs"):
        raise ValidationError("rules[0].ports", "must not be empty")
    assert exited.value.result["option"] == "rules[0].ports"
    assert exited.value.result["table"] == "inet haecs"
    assert exited.value.result["msg"] == "rules[0].ports: must not be empty"


def test_failing_cleanly_names_the_refused_operation() -> None:
    op = Operation("add_service", Service(WEB, scheduler="rr"))
    module = FakeModule({}, {})
    with pytest.raises(Exit) as exited, failing_cleanly(module):
        raise IPVSError("kernel refused", op, rolled_back=True)
    assert exited.value.result["refused"] == "-A -t 192.0.2.10:80 -s rr"
    assert exited.value.result["rolled_back"] is True


def test_failing_cleanly_lets_bugs_through() -> None:
    with pytest.raises(ZeroDivisionError), failing_cleanly(FakeModule({}, {})):
        raise ZeroDivisionError


# ------------------------------------------------------------ ipvs_service


def test_service_create(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    module = service_module({"address": "192.0.2.10", "port": 80, "scheduler": "rr"}, diff=True)
    result = run_main(ipvs_service, module, monkeypatch)
    assert result["changed"] is True
    assert result["operations"] == ["-A -t 192.0.2.10:80 -s rr"]
    assert result["service"]["scheduler"] == "rr"
    assert result["diff"] == {
        "before": "",
        "after": "-A -t 192.0.2.10:80 -s rr\n",
        "before_header": "ipvsadm -Sn (tcp 192.0.2.10:80, before)",
        "after_header": "ipvsadm -Sn (tcp 192.0.2.10:80, after)",
    }
    json.dumps(result)  # what Ansible will do with it


def test_service_edit_is_a_set_and_leaves_real_servers(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table()
    module = service_module({"address": "192.0.2.10", "port": 80, "scheduler": "wlc"})
    result = run_main(ipvs_service, module, monkeypatch)
    assert result["operations"] == ["-E -t 192.0.2.10:80 -s wlc"]
    assert [s["address"] for s in result["service"]["real_servers"]] == ["192.0.2.21"]
    assert "diff" not in result


def test_service_default_scheduler_is_wlc(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = {WEB: VirtualService(Service(WEB, scheduler="wlc"))}
    result = run_main(
        ipvs_service, service_module({"address": "192.0.2.10", "port": 80}), monkeypatch
    )
    assert result["changed"] is False


def test_service_fwmark_ipv6(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {
        "fwmark": 7,
        "family": "ipv6",
        "persistence_timeout": 300,
        "persistence_prefix_length": 64,
    }
    result = run_main(ipvs_service, service_module(params), monkeypatch)
    assert result["operations"] == ["-A -f 7 -6 -s wlc -p 300 -M 64"]
    assert list(kernel.table) == [MARK]


def test_service_absent_ignores_other_options(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table()
    params = {"address": "192.0.2.10", "port": 80, "state": "absent", "persistence_engine": "sip"}
    result = run_main(ipvs_service, service_module(params, check_mode=True), monkeypatch)
    assert result["operations"] == ["-D -t 192.0.2.10:80"]
    assert result["service"] == {}
    assert WEB in kernel.table  # check mode


def test_service_absent_when_missing_is_no_change(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"address": "192.0.2.10", "port": 80, "state": "absent"}
    result = run_main(ipvs_service, service_module(params), monkeypatch)
    assert result == {"changed": False, "operations": [], "service": {}}


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        (
            {"address": "192.0.2.300", "port": 80},
            "address: must be an IPv4 or IPv6 address, got '192.0.2.300'",
        ),
        (
            {"address": "192.0.2.10", "port": 70000},
            "port: must be an integer from 0 to 65535, got 70000",
        ),
        (
            {"address": "192.0.2.10", "port": 0, "persistence_timeout": 0},
            "persistence_timeout: 0 (all ports) is only allowed for a persistent service",
        ),
        ({"fwmark": 0}, "fwmark: must be an integer from 1 to 4294967295, got 0"),
        (
            {"address": "192.0.2.10", "port": 80, "persistence_engine": "sip"},
            "persistence_engine: sip works on UDP services only",
        ),
        (
            {"address": "192.0.2.10", "port": 80, "one_packet": True},
            "one_packet: only applies to UDP and fwmark services",
        ),
        (
            {
                "address": "2001:db8::1",
                "port": 80,
                "persistence_timeout": 9,
                "persistence_netmask": "255.255.255.0",
            },
            "persistence_netmask: is for IPv4",
        ),
        ({"port": 80}, "address: is required unless fwmark is given"),
    ],
)
def test_service_bad_input_fails_without_touching_the_kernel(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], msg: str
) -> None:
    result = run_main(ipvs_service, service_module(params), monkeypatch)
    assert result["failed"] is True
    assert result["msg"].startswith(msg)
    assert kernel.reads == 0


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        (
            {"address": "192.0.2.10", "port": 0},
            "port: 0 (all ports) is only allowed for a persistent service",
        ),
        (
            {"protocol": "udp", "address": "192.0.2.10", "port": 53, "persistence_engine": "sip"},
            "persistence_engine: needs a persistent service",
        ),
        (
            {"address": "192.0.2.10", "port": 80, "persistence_netmask": "255.255.255.0"},
            "persistence_netmask: needs persistence_timeout",
        ),
    ],
)
def test_service_bad_for_a_new_service_fails_after_reading(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], msg: str
) -> None:
    # These depend on what the service has now (an omitted option keeps it),
    # so they are decided after reading; nothing is applied.
    result = run_main(ipvs_service, service_module(params), monkeypatch)
    assert result["failed"] is True
    assert result["msg"].startswith(msg)
    assert kernel.reads == 1
    assert kernel.applied == []


def test_service_kernel_refusal_is_a_clean_failure(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.refuse = IPVSError(
        "kernel refused `-A -t 192.0.2.10:80 -s rr`: File exists", rolled_back=True
    )
    result = run_main(
        ipvs_service,
        service_module({"address": "192.0.2.10", "port": 80, "scheduler": "rr"}),
        monkeypatch,
    )
    assert result["failed"] is True
    assert result["msg"].startswith("kernel refused")


# -------------------------------------------------------- ipvs_real_server


WEB_VS = {"address": "192.0.2.10", "port": 80}


def test_real_server_add(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = {WEB: VirtualService(Service(WEB, scheduler="rr"))}
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21", "forwarding": "masq"}
    result = run_main(ipvs_real_server, real_server_module(params, diff=True), monkeypatch)
    assert result["operations"] == ["-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 1"]
    assert result["real_server"]["forwarding"] == "masq"
    assert result["diff"]["after"].endswith("-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 1\n")


def test_real_server_weight_is_a_set(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = web_table(weight=1)
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21", "forwarding": "masq", "weight": 0}
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["operations"] == ["-e -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 0"]


def test_real_server_unchanged(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = web_table(weight=3)
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21", "forwarding": "masq", "weight": 3}
    result = run_main(ipvs_real_server, real_server_module(params, check_mode=True), monkeypatch)
    assert result["changed"] is False
    assert result["operations"] == []


def test_real_server_keeps_the_kernel_view_with_counters(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table(active=4)
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21", "forwarding": "masq"}
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["real_server"]["active_connections"] == 4


def test_real_server_needs_its_service(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21"}
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["msg"] == (
        "virtual service tcp 192.0.2.10:80 does not exist; create it with haecs.lvs.ipvs_service"
    )
    assert kernel.applied == []


def test_real_server_missing_service_in_check_mode_warns(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21"}
    module = real_server_module(params, check_mode=True, diff=True)
    result = run_main(ipvs_real_server, module, monkeypatch)
    assert result["changed"] is True
    assert result["operations"] == ["-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 1"]
    assert result["diff"] == {
        "before": "",
        "after": "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 1\n",
    }
    assert "does not exist" in module.warnings[0]


def test_real_server_absent(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = web_table()
    params = {
        "virtual_service": WEB_VS,
        "address": "192.0.2.21",
        "state": "absent",
        "weight": 70000,
    }
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["operations"] == ["-d -t 192.0.2.10:80 -r 192.0.2.21:80"]
    assert result["real_server"] == {}
    assert kernel.table[WEB].real_servers == {}


def test_real_server_absent_without_service_is_no_change(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"virtual_service": WEB_VS, "address": "192.0.2.21", "state": "absent"}
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        (
            {"address": "2001:db8::21", "forwarding": "masq"},
            "address: ipv6 real server on an ipv4 service",
        ),
        (
            {"address": "192.0.2.21", "weight": 70000},
            "weight: must be an integer from 0 to 65535, got 70000",
        ),
        (
            {"address": "192.0.2.21", "upper_threshold": 5, "lower_threshold": 10},
            "lower_threshold: must not be above upper_threshold (5)",
        ),
        (
            {"address": "192.0.2.21", "port": 8080, "forwarding": "route"},
            "port: must equal the service port (80) with forwarding route",
        ),
    ],
)
def test_real_server_bad_input(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], msg: str
) -> None:
    kernel.table = web_table()
    result = run_main(
        ipvs_real_server, real_server_module(dict(params, virtual_service=WEB_VS)), monkeypatch
    )
    assert result["msg"].startswith(msg)
    assert kernel.reads == 0


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"address": "2001:db8::21"}, "address: ipv6 real server on an ipv4 service"),
        # A new server gets forwarding route: no port mapping.
        (
            {"address": "192.0.2.22", "port": 8080},
            "port: must equal the service port (80) with forwarding route",
        ),
        # The current server has no upper threshold.
        ({"address": "192.0.2.21", "lower_threshold": 3}, "lower_threshold: needs an upper"),
    ],
)
def test_real_server_bad_against_the_current_entry_fails_after_reading(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], msg: str
) -> None:
    kernel.table = web_table()
    result = run_main(
        ipvs_real_server, real_server_module(dict(params, virtual_service=WEB_VS)), monkeypatch
    )
    assert result["msg"].startswith(msg)
    assert kernel.reads == 1
    assert kernel.applied == []


def test_real_server_bad_service_key_names_the_nested_option(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"virtual_service": {"address": "192.0.2.10", "port": 70000}, "address": "192.0.2.21"}
    result = run_main(ipvs_real_server, real_server_module(params), monkeypatch)
    assert result["msg"].startswith("virtual_service.port: ")


# ---------------------------------------------------------------- ipvs_info


def info_table() -> Table:
    table = web_table()
    stats = Stats(connections=3)
    table[DNS] = VirtualService(Service(DNS, scheduler="rr", stats=stats))
    table[MARK] = VirtualService(Service(MARK, scheduler="sh"))
    return table


def test_info_returns_all_in_ipvsadm_order(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = info_table()
    module = FakeModule(ipvs_info.argument_spec(), {}, check_mode=True)
    result = run_main(ipvs_info, module, monkeypatch)
    assert result["changed"] is False
    assert [s.get("protocol", "fwmark") for s in result["services"]] == ["tcp", "udp", "fwmark"]
    assert result["ipvsadm"][0] == "-A -t 192.0.2.10:80 -s rr"
    assert result["services"][1]["stats"]["connections"] == 3
    assert result["info"] == {"version": "1.2.1", "connection_table_size": 4096}


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"fwmark": 7, "family": "ipv6"}, 1),
        ({"protocol": "udp", "address": "192.0.2.10", "port": 53}, 1),
        ({"address": "192.0.2.99", "port": 80}, 0),
    ],
)
def test_info_selects_one_service(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], count: int
) -> None:
    kernel.table = info_table()
    result = run_main(ipvs_info, FakeModule(ipvs_info.argument_spec(), params), monkeypatch)
    assert len(result["services"]) == count
    assert (result["ipvsadm"] == []) == (count == 0)


def test_info_bad_filter_fails(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    module = FakeModule(ipvs_info.argument_spec(), {"address": "192.0.2.10", "port": 70000})
    result = run_main(ipvs_info, module, monkeypatch)
    assert result["msg"].startswith("port: ")


def test_info_query_selects_part_of_the_answer(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = info_table()
    params = {"query": "services[?protocol=='udp'].stats.connections | [0]", "stats": True}
    result = run_main(ipvs_info, FakeModule(ipvs_info.argument_spec(), params), monkeypatch)
    assert result["query_result"] == 3
    params = {"query": "ipvsadm[?starts_with(@, '-A')]"}
    result = run_main(ipvs_info, FakeModule(ipvs_info.argument_spec(), params), monkeypatch)
    assert result["query_result"] == [line for line in result["ipvsadm"] if line.startswith("-A")]
    assert "query_result" not in run_main(
        ipvs_info, FakeModule(ipvs_info.argument_spec(), {}), monkeypatch
    )


def test_info_bad_query_fails_before_reading(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.table = info_table()
    module = FakeModule(ipvs_info.argument_spec(), {"query": "services[?"})
    result = run_main(ipvs_info, module, monkeypatch)
    assert result["msg"].startswith("query: not a JMESPath expression")
    monkeypatch.setattr(ipvs_info, "JMESPATH_IMPORT_ERROR", True)
    module = FakeModule(ipvs_info.argument_spec(), {"query": "services"})
    result = run_main(ipvs_info, module, monkeypatch)
    assert result["msg"].startswith(
        "query: Failed to import the required Python library (jmespath)"
    )


# ---------------------------------------------------------------- ipvs_table


def table_module(params: Dict[str, Any], **kw: Any) -> FakeModule:
    return FakeModule(ipvs_table.argument_spec(), params, **kw)


def many_services(count: int) -> List[Dict[str, Any]]:
    return [
        {"address": "192.0.2.10", "port": 1000 + i, "real_servers": [{"address": "10.0.0.2"}]}
        for i in range(count)
    ]


def test_table_result_is_small_by_default(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    module = table_module({"services": many_services(101)}, diff=True)
    result = run_main(ipvs_table, module, monkeypatch)
    assert result["summary"] == {"added": 202, "edited": 0, "deleted": 0}
    assert result["table"] == {"services": 101, "real_servers": 101}
    assert len(result["operations"]) == ipvs_table.SMALL
    assert result["operations_omitted"] == 102
    assert "before" not in result and "after" not in result
    assert result["diff"] == {
        "before": "",
        "after": "# 202 operations; detail: true shows the ipvsadm -Sn lines\n",
    }
    assert result["invocation"]["module_args"]["services"] == "(101 services, not echoed back)"
    # The same run again: nothing to do, still counts only.
    again = run_main(ipvs_table, table_module({"services": many_services(101)}), monkeypatch)
    assert again["changed"] is False and again["operations"] == []


def test_table_detail_returns_everything(kernel: type, monkeypatch: pytest.MonkeyPatch) -> None:
    module = table_module({"services": many_services(60), "detail": True}, diff=True)
    result = run_main(ipvs_table, module, monkeypatch)
    assert len(result["operations"]) == 120 and "operations_omitted" not in result
    assert len(result["after"]) == 120 and result["before"] == []
    assert result["diff"]["after"].count("\n") == 120
    assert "invocation" not in result


def test_table_src_rules_file(kernel: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    rules = tmp_path / "ipvsadm.rules"
    rules.write_text(
        "-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 3 -x 9\n"
    )
    params = {"state": "overridden", "src": str(rules)}
    result = run_main(ipvs_table, table_module(params), monkeypatch)
    assert result["operations"] == [
        "-A -t 192.0.2.10:80 -s rr",
        "-a -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 3 -x 9",
    ]
    assert run_main(ipvs_table, table_module(params), monkeypatch)["changed"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "src: cannot read"),
        ("-A -t 192.0.2.10:80 -s fastest\n", "RULES:1: scheduler: must be one of"),
        # Found against the current table (port mapping needs masq): still located.
        ("-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.9:8080 -w 1\n", "RULES:2: port"),
    ],
)
def test_table_src_errors_name_the_line(
    kernel: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, text: Any, message: str
) -> None:
    rules = tmp_path / "ipvsadm.rules"
    if text is not None:
        rules.write_text(text)
    result = run_main(ipvs_table, table_module({"src": str(rules)}), monkeypatch)
    assert result["failed"] is True
    assert result["msg"].replace(str(rules), "RULES").startswith(message), result["msg"]
    assert kernel.applied == []


def test_table_src_equal_to_the_table_is_not_parsed_again(
    kernel: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    rules = tmp_path / "ipvsadm.rules"
    rules.write_text(
        "-A -t 192.0.2.10:80 -s rr\n-a -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 3 -x 9\n"
    )
    params = {"state": "overridden", "src": str(rules)}
    assert run_main(ipvs_table, table_module(params), monkeypatch)["changed"] is True

    def not_again(_text: str, _name: str) -> Any:
        raise AssertionError("parsed although the file is the table")

    monkeypatch.setattr(ipvs_table, "parse_rules", not_again)
    # Other order, spacing and comments: still exactly the table.
    rules.write_text(
        "# boot\n-a  -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 3 -x 9\n\n-A -t 192.0.2.10:80 -s rr\n"
    )
    for check_mode in (True, False):
        module = table_module(params, check_mode=check_mode)
        result = run_main(ipvs_table, module, monkeypatch)
        assert result["changed"] is False and result["operations"] == []
        assert result["table"] == {"services": 1, "real_servers": 1}
    # A file that differs is parsed (and here refused by the stub).
    rules.write_text("-A -t 192.0.2.10:80 -s wrr\n")
    with pytest.raises(AssertionError, match="parsed although"):
        run_main(ipvs_table, table_module(params), monkeypatch)


def drain_params(**extra: Any) -> Dict[str, Any]:
    """web's pool replaced by an empty one: 192.0.2.21 leaves."""
    service = {"address": "192.0.2.10", "port": 80, "scheduler": "rr", "real_servers": []}
    return dict({"state": "replaced", "services": [service], "drain_timeout": 30}, **extra)


class Draining:
    """A kernel whose leaving server's connections finish after a few reads."""

    def __init__(self, kernel: type, monkeypatch: pytest.MonkeyPatch, counts: List[int]) -> None:
        self.counts = counts
        self.sleeps: List[float] = []
        original = kernel.read

        def read(fake: Any, with_stats: bool = False, only: Any = None) -> Table:
            table = original(fake, with_stats, only)
            entry = table.get(WEB)
            if entry is not None and self.counts:
                server = entry.real_servers[("192.0.2.21", 80)]
                active = self.counts.pop(0)
                entry.real_servers[server.key] = RealServer(
                    server.address,
                    server.port,
                    server.forwarding,
                    server.weight,
                    active_connections=active,
                )
            return table

        monkeypatch.setattr(kernel, "read", read)
        monkeypatch.setattr("time.sleep", self.sleeps.append)


def test_table_drains_a_leaving_server_before_deleting_it(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table(weight=5)
    waiting = Draining(kernel, monkeypatch, [3, 3, 1, 0])
    result = run_main(ipvs_table, table_module(drain_params()), monkeypatch)
    assert [[op.ipvsadm_line() for op in batch] for batch in kernel.applied] == [
        ["-e -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 0"],
        ["-d -t 192.0.2.10:80 -r 192.0.2.21:80"],
    ]
    assert waiting.sleeps == [1.0, 1.0]
    assert result["operations"] == ["-d -t 192.0.2.10:80 -r 192.0.2.21:80"]
    assert result["drained"]["operations"] == ["-e -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 0"]
    assert result["drained"]["real_servers"] == [
        {"service": "tcp 192.0.2.10:80", "real_server": "192.0.2.21:80", "connections_left": 0}
    ]


def test_table_drain_in_check_mode_waits_for_nothing(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table(weight=5)
    waiting = Draining(kernel, monkeypatch, [3])
    module = table_module(drain_params(), check_mode=True)
    result = run_main(ipvs_table, module, monkeypatch)
    assert result["changed"] is True and "drained" not in result
    assert kernel.applied == [] and waiting.sleeps == []


def test_table_failed_delete_after_a_drain_gives_the_weight_back(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table(weight=5)
    Draining(kernel, monkeypatch, [2, 0])
    original = kernel.apply

    def refuse_deletes(fake: Any, operations: List[Operation]) -> None:
        if any(op.kind == "delete_real_server" for op in operations):
            raise IPVSError("kernel refused `-d ...`: No such destination")
        original(fake, operations)

    monkeypatch.setattr(kernel, "apply", refuse_deletes)
    result = run_main(ipvs_table, table_module(drain_params()), monkeypatch)
    assert result["failed"] is True and "refused" in result["msg"]
    assert kernel.table == web_table(weight=5)
    assert kernel.table[WEB].real_servers[("192.0.2.21", 80)].weight == 5


@pytest.mark.parametrize("timeout", [-1, 86401])
def test_table_drain_timeout_out_of_range_changes_nothing(
    kernel: type, monkeypatch: pytest.MonkeyPatch, timeout: int
) -> None:
    kernel.table = web_table(weight=5)
    result = run_main(ipvs_table, table_module(drain_params(drain_timeout=timeout)), monkeypatch)
    assert result["failed"] is True
    assert result["msg"].startswith("drain_timeout: must be from 0 to 86400 seconds"), result["msg"]
    assert kernel.applied == [] and kernel.reads == 0


def test_table_overridden_keeps_what_keep_names(
    kernel: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.table = web_table(weight=5)
    kernel.table[DNS] = VirtualService(Service(DNS, scheduler="rr"))
    params = {
        "state": "overridden",
        "services": [{"address": "192.0.2.10", "port": 8080, "scheduler": "wlc"}],
        "keep": [{"protocol": "tcp", "address": "192.0.2.10", "port": 80}],
    }
    result = run_main(ipvs_table, table_module(params), monkeypatch)
    assert result["operations"] == ["-A -t 192.0.2.10:8080 -s wlc", "-D -u 192.0.2.10:53"]
    assert kernel.table[WEB] == web_table(weight=5)[WEB]
    again = run_main(ipvs_table, table_module(params), monkeypatch)
    assert again["changed"] is False


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"state": "replaced", "services": [], "keep": [{"fwmark": 3}]},
            "keep: applies only with state overridden, not replaced",
        ),
        (
            {
                "state": "overridden",
                "services": [{"address": "192.0.2.10", "port": 80}],
                "keep": [{"protocol": "tcp", "address": "192.0.2.10", "port": 80}],
            },
            "services[0]: tcp 192.0.2.10:80 is also in keep",
        ),
        (
            {"state": "overridden", "services": [], "keep": [{"address": "192.0.2.10"}]},
            "keep[0].port",
        ),
    ],
)
def test_table_bad_keep_changes_nothing(
    kernel: type, monkeypatch: pytest.MonkeyPatch, params: Dict[str, Any], message: str
) -> None:
    kernel.table = web_table(weight=5)
    result = run_main(ipvs_table, table_module(params), monkeypatch)
    assert result["failed"] is True
    assert result["msg"].startswith(message), result["msg"]
    assert kernel.applied == []
