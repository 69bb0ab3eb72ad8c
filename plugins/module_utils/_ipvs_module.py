# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every haecs.lvs module shares: option specs, the run, the result.

A module declares its options from the spec fragments here (option names
match `ipvs_params`, so one params dict feeds the parser), then:

    with failing_cleanly(module):
        key = parse_key(module.params)
        run = converge(lambda table: [...operations...], module.check_mode)
    module.exit_json(**changed_result(run, key, module._diff))

`converge` opens IPVS, reads the table once, asks the module for the
operations, and applies them (or, in check mode, simulates them).
`failing_cleanly` turns our own errors into `fail_json` with a clear
message and no traceback.  No Ansible import: the module object is duck-typed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Tuple

from .ipvs.drain import Drained, leaving, quiesce, wait_drained
from .ipvs.engine import IPVS
from .ipvs.errors import HaecsError
from .ipvs.model import (
    FAMILIES,
    FORWARDING_METHODS,
    PROTOCOLS,
    SCHEDULER_FLAGS,
    SCHEDULERS,
    TUNNEL_CHECKSUMS,
    TUNNEL_TYPES,
    ServiceKey,
    Table,
    diff_text,
)
from .ipvs.params import (
    PERSISTENCE_ENGINE_CHOICES,
    SERVICE_KEY_FIELDS,
    ValidationError,
    parse_service_key,
)
from .ipvs.plan import Operation, simulate

Spec = Dict[str, Dict[str, Any]]

STATE_SPEC: Spec = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]}
}

# No `default` where ipvs_params defines one: the parser must see None to
# tell "not given" apart (protocol must stay unset for a fwmark service).
SERVICE_KEY_SPEC: Spec = {
    "protocol": {"type": "str", "choices": list(PROTOCOLS)},
    "address": {"type": "str"},
    "port": {"type": "int"},
    "fwmark": {"type": "int"},
    "family": {"type": "str", "choices": list(FAMILIES)},
}

SERVICE_ATTRIBUTE_SPEC: Spec = {
    "scheduler": {"type": "str", "choices": list(SCHEDULERS)},
    "scheduler_flags": {"type": "list", "elements": "str", "choices": list(SCHEDULER_FLAGS)},
    "one_packet": {"type": "bool"},
    "persistence_timeout": {"type": "int"},
    "persistence_netmask": {"type": "str"},
    "persistence_prefix_length": {"type": "int"},
    "persistence_engine": {"type": "str", "choices": list(PERSISTENCE_ENGINE_CHOICES)},
}

REAL_SERVER_SPEC: Spec = {
    "address": {"type": "str", "required": True},
    "port": {"type": "int"},
    "forwarding": {"type": "str", "choices": list(FORWARDING_METHODS)},
    "weight": {"type": "int"},
    "upper_threshold": {"type": "int"},
    "lower_threshold": {"type": "int"},
    "tunnel_type": {"type": "str", "choices": list(TUNNEL_TYPES)},
    "tunnel_port": {"type": "int"},
    "tunnel_checksum": {"type": "str", "choices": list(TUNNEL_CHECKSUMS)},
}


def service_key_spec() -> Spec:
    """The service key options (protocol, address, port, fwmark, family)."""
    return {name: dict(option) for name, option in SERVICE_KEY_SPEC.items()}


def service_spec() -> Spec:
    """A whole virtual service: key + scheduler and persistence options."""
    spec = service_key_spec()
    spec.update((name, dict(option)) for name, option in SERVICE_ATTRIBUTE_SPEC.items())
    return spec


def virtual_service_spec(required: bool = True) -> Spec:
    """`virtual_service`: a dict naming an existing service by its key."""
    return {
        "virtual_service": {"type": "dict", "required": required, "options": service_key_spec()}
    }


def real_server_spec() -> Spec:
    """A real server's own options (its service is named elsewhere)."""
    return {name: dict(option) for name, option in REAL_SERVER_SPEC.items()}


def state_spec() -> Spec:
    return {name: dict(option) for name, option in STATE_SPEC.items()}


# ------------------------------------------------------------------ parsing


def has_service_key(params: Mapping[str, Any]) -> bool:
    """True when any key option (address or fwmark first of all) was given."""
    return any(params.get(name) is not None for name in SERVICE_KEY_FIELDS)


def parse_key(params: Mapping[str, Any], prefix: str = "") -> ServiceKey:
    """The service key from the key options only (other options are ignored)."""
    return parse_service_key({name: params.get(name) for name in SERVICE_KEY_FIELDS}, prefix)


def parse_real_server_key(
    params: Mapping[str, Any], service: ServiceKey, prefix: str = ""
) -> Tuple[str, int]:
    """(address, port) of a real server, for removal: no other option matters."""
    name = "%s.address" % prefix if prefix else "address"
    try:
        address = ipaddress.ip_address(str(params.get("address", "")).strip()).compressed
    except ValueError:
        raise ValidationError(
            name, "must be an IPv4 or IPv6 address, got %r" % (params.get("address"),)
        ) from None
    port = params.get("port")
    if port is None:
        return address, service.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(
            "%s.port" % prefix if prefix else "port",
            "must be an integer from 0 to 65535, got %r" % (port,),
        )
    return address, port


# -------------------------------------------------------------------- runs


@dataclass
class Run:
    """One module run: the table before and after, and what was (or would be) done."""

    before: Table
    after: Table
    operations: List[Operation]
    # Real servers drained before their removal (drain_timeout), as reported.
    drained: Optional[Drained] = None

    @property
    def changed(self) -> bool:
        return bool(self.operations)

    def operation_lines(self) -> List[str]:
        return [op.ipvsadm_line() for op in self.operations]


Decide = Callable[[Table], List[Operation]]


def converge(
    decide: Decide,
    check_mode: bool,
    ipvs_factory: Optional[Callable[[], IPVS]] = None,
    keys: Optional[Collection[ServiceKey]] = None,
    with_stats: bool = True,
    read_back: bool = True,
    drain_timeout: float = 0,
) -> Run:
    """Read the table, plan with `decide`, then apply (or simulate in check mode).

    `keys`: the only services `decide` looks at; the rest of the table is not
    read (before/after then hold just those services).
    `with_stats`: read counters too.  `read_back`: after applying, read the
    table again (the kernel's own view); False computes `after` from the plan.
    `drain_timeout`: seconds a real server about to be deleted is first
    drained (weight 0, established connections finish); 0 deletes at once.
    """
    with (ipvs_factory or IPVS)() as ipvs:
        before = ipvs.read(with_stats=with_stats, only=keys)
        operations = decide(before)
        if not operations:
            return Run(before, before, [])
        if check_mode:
            return Run(before, simulate(before, operations), operations)
        drained = None
        if drain_timeout > 0:
            drained = _drain_then_apply(ipvs, before, operations, drain_timeout)
        else:
            ipvs.apply(operations)
        if not read_back:
            return Run(before, simulate(before, operations), operations, drained)
        # Read back: the result shows the kernel's own view, counters included.
        return Run(before, ipvs.read(with_stats=with_stats, only=keys), operations, drained)


def _drain_then_apply(
    ipvs: IPVS, before: Table, operations: List[Operation], timeout: float
) -> Optional[Drained]:
    members = [(service.key, server.key) for service, server in leaving(operations)]
    if not members:
        ipvs.apply(operations)
        return None
    quiet = quiesce(operations, before)
    ipvs.apply(quiet)
    try:
        waited_keys = {service for service, _server in members}
        drained = wait_drained(lambda: ipvs.read(only=waited_keys), members, timeout)
        drained.quiesced = [op.ipvsadm_line() for op in quiet]
        ipvs.apply(operations)
    except BaseException:
        # All or nothing: the weights drained for this change come back too.
        ipvs.apply([undo for op in reversed(quiet) for undo in op.inverse()])
        raise
    return drained


def read_table(
    with_stats: bool, ipvs_factory: Optional[Callable[[], IPVS]] = None
) -> Tuple[Table, Dict[str, object]]:
    """The table and the IPVS info (version, connection table size)."""
    with (ipvs_factory or IPVS)() as ipvs:
        return ipvs.read(with_stats=with_stats), ipvs.info()


# ------------------------------------------------------------------ results


def service_diff(run: Run, key: ServiceKey) -> Dict[str, str]:
    """Ansible's diff for one service: its `ipvsadm -Sn` lines before and after,
    then its thresholds as labelled comment lines."""

    def text(table: Table) -> str:
        entry = table.get(key)
        return diff_text({key: entry} if entry is not None else {})

    return {
        "before": text(run.before),
        "after": text(run.after),
        "before_header": "ipvsadm -Sn (%s, before)" % key,
        "after_header": "ipvsadm -Sn (%s, after)" % key,
    }


def changed_result(run: Run, key: ServiceKey, diff_mode: bool) -> Dict[str, Any]:
    """changed, operations, and the diff when diff mode is on."""
    result: Dict[str, Any] = {"changed": run.changed, "operations": run.operation_lines()}
    if diff_mode:
        result["diff"] = service_diff(run, key)
    return result


def service_summary(table: Table, key: ServiceKey) -> Dict[str, object]:
    entry = table.get(key)
    return entry.summary() if entry is not None else {}


def real_server_summary(
    table: Table, key: ServiceKey, server: Tuple[str, int]
) -> Dict[str, object]:
    entry = table.get(key)
    found = entry.real_servers.get(server) if entry is not None else None
    return found.summary() if found is not None else {}


# ------------------------------------------------------------------- errors


class ServiceMissing(HaecsError, LookupError):
    """A module needs a virtual service that is not in the table."""

    def __init__(self, key: ServiceKey) -> None:
        self.key = key
        super().__init__(
            "virtual service %s does not exist; create it with haecs.lvs.ipvs_service" % key
        )
