"""The daemon's configuration loaded in a forked child: the same model, the same errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import yaml
from haecs_monitor.config import forked
from haecs_monitor.config.load import ConfigError, load_config
from haecs_monitor.config.sections import SectionMemory
from test_daemon import config_dict


def write(tmp: str, document: dict[str, Any]) -> str:
    path = os.path.join(tmp, "monitor.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(document, handle)
    return path


def counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths this process loaded itself (a child's loads are not seen here)."""
    loads: list[str] = []

    def counted(path: str, sections: Any = None) -> Any:
        loads.append(path)
        return load_config(path, sections)

    monkeypatch.setattr(forked, "load_config", counted)
    return loads


def test_the_child_loads_the_same_model(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(str(tmp_path), config_dict(str(tmp_path), servers=(1, 2, 3)))
    loads = counting_loads(monkeypatch)
    config = forked.load_config_in_child(path)
    assert loads == []
    assert config == load_config(path)
    specs = config.unique_checks()
    assert len(specs) == 3
    assert all(spec.dedup_key == key for key, spec in specs.items())


def test_a_check_of_the_servers_own_endpoint_shares_its_objects(tmp_path: Any) -> None:
    document = config_dict(str(tmp_path), servers=(1, 2), port=8080)
    # the second server's check probes another endpoint: kept as it was
    document["services"][0]["real_servers"][1]["checks"] = [
        {"type": "tcp", "address": "10.0.9.9", "port": 9090}
    ]
    path = write(str(tmp_path), document)
    config = forked.load_config_in_child(path)
    assert config == load_config(path)
    own, other = config.services[0].real_servers
    (check,) = own.checks
    assert check.port == 8080 and check.port is own.server.port
    assert check.address is own.server.address
    assert check.probe_key[2] is check.port  # the key made again from the same objects
    (elsewhere,) = other.checks
    assert (elsewhere.address, elsewhere.port) == ("10.0.9.9", 9090)
    assert elsewhere.dedup_key == ("tcp", "10.0.9.9", 9090, (), elsewhere.timing)
    # A spec is its own key (no second tuple per check), its timing shared.
    assert check.dedup_key is check and elsewhere.dedup_key is elsewhere
    assert check.timing is elsewhere.timing


def test_the_strings_every_service_repeats_come_back_as_one_object(tmp_path: Any) -> None:
    """Each service is a pickle of its own: its family, protocol, scheduler,
    on_failure, its servers' forwarding and tunnel settings and its checks'
    type would be a copy per service; they come back interned, the model
    equal to the one loaded here."""
    document = many_services(str(tmp_path), services=3, per_service=2)
    path = write(str(tmp_path), document)
    config = forked.load_config_in_child(path)
    assert config == load_config(path)
    first, second, third = config.services
    assert first.service.key != second.service.key
    assert first.service.scheduler is third.service.scheduler
    for name in ("family", "protocol"):
        assert getattr(first.service.key, name) is getattr(third.service.key, name)
    assert first.on_failure is third.on_failure
    one, other = first.real_servers[0], third.real_servers[1]
    for name in ("forwarding", "tunnel_type", "tunnel_checksum"):
        assert getattr(one.server, name) is getattr(other.server, name), name
    assert one.checks[0].type is other.checks[0].type
    assert one.checks[0].timing is other.checks[0].timing
    assert not hasattr(first, "__dict__") or sys.version_info < (3, 10)  # slots


def test_an_invalid_config_gives_the_same_errors(tmp_path: Any) -> None:
    document = config_dict(str(tmp_path))
    document["services"][0]["real_servers"][1]["weight"] = "heavy"
    document["services"][0]["real_servers"][0]["weight"] = -1
    path = write(str(tmp_path), document)
    with pytest.raises(ConfigError) as in_process:
        load_config(path)
    with pytest.raises(ConfigError) as in_child:
        forked.load_config_in_child(path)
    assert len(in_child.value.errors) == 2
    assert in_child.value.errors == in_process.value.errors


def test_a_failing_child_falls_back_to_loading_here(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(str(tmp_path), config_dict(str(tmp_path)))

    def crash(_path: str, _sections: Any) -> bytes:
        raise RuntimeError("a bug in the child")

    monkeypatch.setattr(forked, "_loaded_message", crash)
    loads = counting_loads(monkeypatch)
    assert forked.load_config_in_child(path) == load_config(path)
    assert loads == [path]


def test_the_section_memory_comes_back_from_the_child(tmp_path: Any) -> None:
    """The first reload after the start reads again only what changed: the
    child's section memory is the daemon's, holding the model's own objects."""
    path = write(str(tmp_path), config_dict(str(tmp_path), servers=(1, 2, 3)))
    sections = SectionMemory()
    config = forked.load_config_in_child(path, sections)
    assert len(sections) == 2 * len(config.services) > 0  # by its text and by its data
    assert sections.config is config
    again = load_config(path, sections)  # the same file: recalled, not read
    assert again is config


def many_services(tmp: str, services: int, per_service: int) -> dict[str, Any]:
    document = config_dict(tmp)
    template = document["services"][0]
    document["services"] = [
        dict(
            template,
            address="10.1.%d.%d" % divmod(number, 250),
            real_servers=[
                {"address": "10.2.%d.%d" % divmod(number * per_service + n, 250), "weight": 1}
                for n in range(per_service)
            ],
        )
        for number in range(services)
    ]
    # No object shared between services: YAML would write anchors, and a
    # file with anchors is read whole, not section by section.
    return json.loads(json.dumps(document))  # type: ignore[no-any-return]


def test_each_service_comes_back_once_shared_by_config_and_memory(tmp_path: Any) -> None:
    path = write(str(tmp_path), many_services(str(tmp_path), 30, 3))
    sections = SectionMemory()
    config = forked.load_config_in_child(path, sections)
    assert config == load_config(path)
    assert len(config.services) == 30
    assert len(sections) == 60  # each section by its text and by its data
    # The next load of the same sections recalls the very services the
    # child sent, each one object in the config and the memory.
    with open(path, "a") as handle:
        handle.write("\n# edited\n")
    again = load_config(path, sections)
    assert again is not config
    assert all(new is old for new, old in zip(again.services, config.services))


def test_the_unpickled_model_keeps_no_dead_memory_between_its_objects(tmp_path: Any) -> None:
    """A single pickle's memo held every real server's constructor arguments
    until the end of the load: their memory, freed last, stayed as holes
    between the model's objects.  Measured as the traced peak of the daemon's
    unpickling against what the model keeps (one pickle: 1.34x here, one
    pickle per service 1.18x)."""
    import gc
    import tracemalloc

    path = write(str(tmp_path), many_services(str(tmp_path), 300, 10))
    message = forked._loaded_message(path, SectionMemory())
    gc.collect()
    tracemalloc.start()
    try:
        reply = forked._reply(message)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(reply, tuple) and len(reply[0].services) == 300
    print("RATIO", peak / kept)
    assert peak < 1.26 * kept, (peak, kept)
