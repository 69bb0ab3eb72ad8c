"""Options -> model -> netlink -> model: reading back what was asked changes nothing.

The host half of the idempotence property (the kernel half is
tests/kernel_engine/test_idempotence_property.py): every generated set of
options, encoded as the engine sends it and decoded as the engine reads it,
plans no operation, whether the options are planned as declared or merged
with the entry read back.
"""

from __future__ import annotations

from typing import Any, Dict

from hypothesis import given, settings
from ipvs_options import service_options

from ansible_collections.haecs.lvs.plugins.module_utils._ipvs_table_params import parse_table
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import codec as nl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import genl
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    Service,
    ServiceKey,
    VirtualService,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan


def read_back(entry: VirtualService) -> VirtualService:
    """The entry as the engine would read it after sending it."""
    attrs = genl.parse_attrs(genl.parse_attrs(nl.encode_service(entry.service))[nl.ATTR_SERVICE])
    service = nl.decode_service(attrs)
    servers = {}
    for server in entry.real_servers.values():
        raw = genl.parse_attrs(nl.encode_real_server(server))[nl.ATTR_DEST]
        decoded = nl.decode_real_server(genl.parse_attrs(raw), service.key.family)
        servers[decoded.key] = decoded
    return VirtualService(service, servers)


@settings(max_examples=400, deadline=None)
@given(service_options())
def test_options_read_back_plan_nothing(options: Dict[str, Any]) -> None:
    declared, _listed = parse_table([options])
    current = {key: read_back(entry) for key, entry in declared.items()}
    assert plan(current, declared, purge_real_servers=True) == []
    merged, _listed = parse_table([options], current=current)
    assert plan(current, merged) == []
    # ...and so does the same task with every non-key option left out.
    bare = {
        k: v for k, v in options.items() if k in ("protocol", "address", "port", "fwmark", "family")
    }
    bare["real_servers"] = [
        {"address": s["address"], "port": s.get("port")} for s in options["real_servers"]
    ]
    merged, _listed = parse_table([bare], current=current)
    assert plan(current, merged) == []


def test_full_length_masks_are_no_mask() -> None:
    v4 = ServiceKey.for_address("tcp", "198.51.100.10", 443)
    v6 = ServiceKey.for_address("tcp", "2001:db8::10", 443)
    assert Service(v4, persistence_timeout=60, persistence_prefix=32) == Service(
        v4, persistence_timeout=60
    )
    assert Service(v6, persistence_timeout=60, persistence_prefix=128) == Service(
        v6, persistence_timeout=60
    )
    assert Service(v4, persistence_prefix=24).persistence_prefix is None
    assert Service(v4, persistence_timeout=60, persistence_prefix=24).persistence_prefix == 24
