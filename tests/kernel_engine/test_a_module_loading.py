"""The engine loads ip_vs and schedulers itself (first file: ip_vs is not loaded yet)."""

from __future__ import annotations

import os

import pytest
from conftest import saved_table

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.engine import IPVS, IPVSError
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import (
    SCHEDULERS,
    Service,
    ServiceKey,
    VirtualService,
    table_lines,
)
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.plan import plan


def test_engine_loads_ip_vs_when_missing() -> None:
    if os.path.exists("/proc/net/ip_vs"):
        pytest.skip("ip_vs was loaded before this test (not a fresh kernel)")
    with IPVS() as ipvs:
        assert os.path.exists("/proc/net/ip_vs")
        assert ipvs.read() == {}
        assert ipvs.info()["version"].startswith("1.2")


def test_every_scheduler_module_is_loaded_on_demand(clean_table: None) -> None:
    desired = {}
    for index, scheduler in enumerate(SCHEDULERS):
        key = ServiceKey.for_address("tcp", "10.0.0.1", 1000 + index)
        desired[key] = VirtualService(Service(key, scheduler=scheduler))
    with IPVS() as ipvs:
        ipvs.apply(plan(ipvs.read(), desired))
        assert ipvs.read() == desired
    assert sorted(saved_table()) == sorted(table_lines(desired))
    for scheduler in SCHEDULERS:
        assert os.path.isdir("/sys/module/ip_vs_%s" % scheduler) or scheduler == "wlc"


def test_unloadable_scheduler_fails_before_any_change(clean_table: None) -> None:
    good = ServiceKey.for_address("tcp", "10.0.0.1", 80)
    bad = ServiceKey.for_address("tcp", "10.0.0.1", 81)
    desired = {
        good: VirtualService(Service(good, scheduler="rr")),
        bad: VirtualService(Service(bad, scheduler="nosuch")),
    }
    with IPVS() as ipvs, pytest.raises(IPVSError, match="cannot load kernel module ip_vs_nosuch"):
        ipvs.apply(plan(ipvs.read(), desired))
    assert saved_table() == []
