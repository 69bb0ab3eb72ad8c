"""A reload reads again only the service sections that changed (config/sections.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from haecs_monitor.config import load as config_load
from haecs_monitor.config.load import ConfigError, MonitorConfig, load_config
from haecs_monitor.config.sections import SectionMemory, checks_unchanged
from haecs_monitor.config.yamlsections import split_services


def config_data(services: int = 3, timeout: float = 1.0) -> dict[str, Any]:
    return {
        "global": {"check_defaults": {"interval": 5, "timeout": timeout}},
        "services": [
            {
                "address": "10.0.0.%d" % (index + 1),
                "port": 80,
                "checks": [{"type": "tcp"}],
                "real_servers": [
                    {"address": "10.0.%d.%d" % (index + 1, n), "forwarding": "masq", "weight": n}
                    for n in (1, 2)
                ],
            }
            for index in range(services)
        ],
    }


def write(path: Path, data: dict[str, Any], form: str) -> None:
    path.write_text(json.dumps(data) if form == "json" else yaml.safe_dump(data))


def write_as_given(path: Path, data: dict[str, Any], form: str) -> None:
    """Keys in the data's order in both formats (PyYAML sorts them by default)."""
    path.write_text(json.dumps(data) if form == "json" else yaml.safe_dump(data, sort_keys=False))


def reload_of(path: Path, data: dict[str, Any], form: str) -> tuple[MonitorConfig, MonitorConfig]:
    """The config before and after `data` replaced the file, loaded with one memory."""
    memory = SectionMemory()
    write(path, config_data(), form)
    first = load_config(str(path), memory)
    write(path, data, form)
    return first, load_config(str(path), memory)


def kept(after: MonitorConfig, before: MonitorConfig) -> list[bool]:
    """Which services of `after` are `before`'s very objects."""
    return [new is old for new, old in zip(after.services, before.services)]


@pytest.fixture(params=["yaml", "json"])
def form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_an_unchanged_file_is_the_same_configuration(tmp_path: Path, form: str) -> None:
    first, second = reload_of(tmp_path / "m.yml", config_data(), form)
    assert second is first


def test_only_the_changed_section_is_read_again(tmp_path: Path, form: str) -> None:
    data = config_data()
    data["services"][1]["real_servers"][0]["weight"] = 7
    first, second = reload_of(tmp_path / "m.yml", data, form)
    assert second.services[0] is first.services[0]
    assert second.services[2] is first.services[2]
    assert second.services[1] is not first.services[1]
    assert second.services[1].real_servers[0].server.weight == 7


@pytest.mark.parametrize("switch", [("yaml", "json"), ("json", "yaml")])
def test_a_format_switch_keeps_the_services_it_did_not_change(
    tmp_path: Path, switch: tuple[str, str]
) -> None:
    """Every section is read again, but a service equal to the last load's is
    that same object: only the edited one is new."""
    memory = SectionMemory()
    path = tmp_path / "m.yml"
    write(path, config_data(), switch[0])
    first = load_config(str(path), memory)
    data = config_data()
    data["services"][1]["real_servers"][0]["weight"] = 7
    write(path, data, switch[1])
    second = load_config(str(path), memory)
    assert [new is old for new, old in zip(second.services, first.services)] == [True, False, True]
    assert second.services[1].real_servers[0].server.weight == 7
    # The memory holds the kept objects under the new format's sections.
    third = load_config(str(path), memory)
    assert third is second
    data["services"][1]["real_servers"][0]["weight"] = 8
    write(path, data, switch[1])
    fourth = load_config(str(path), memory)
    assert [new is old for new, old in zip(fourth.services, first.services)] == [True, False, True]


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the service sections validated from now on."""
    paths: list[str] = []
    validate = config_load._service

    def counted(raw: Any, where: str, *args: Any) -> Any:
        paths.append(where)
        return validate(raw, where, *args)

    monkeypatch.setattr(config_load, "_service", counted)
    return paths


@pytest.mark.parametrize("switch", [("yaml", "json"), ("json", "yaml")])
def test_the_same_data_written_in_the_other_format_is_not_validated_again(
    tmp_path: Path, switch: tuple[str, str], validated: list[str]
) -> None:
    """A YAML section is remembered by its data as well: a switch between the
    formats reads every section again but validates only the changed one,
    also after a reload that recalled every section by its text."""
    memory = SectionMemory()
    path = tmp_path / "m.yml"
    data = config_data(4)
    write_as_given(path, data, switch[0])
    first = load_config(str(path), memory)
    with open(path, "a") as handle:  # recalled by text (YAML) or by data (JSON)
        handle.write("\n# edited\n" if switch[0] == "yaml" else "\n")
    assert load_config(str(path), memory).services == first.services
    assert len(validated) == 4  # the first load's
    validated.clear()
    data["services"][2]["port"] = 8080
    write_as_given(path, data, switch[1])
    second = load_config(str(path), memory)
    assert validated == ["services[2]"]
    assert kept(second, first) == [True, True, False, True]
    assert second.services[2].service.key.port == 8080
    # and back: what the other format's load read is remembered both ways
    validated.clear()
    write_as_given(path, data, switch[0])
    assert load_config(str(path), memory).services == second.services
    assert validated == []


def test_another_key_order_is_validated_again_to_the_same_services(
    tmp_path: Path, validated: list[str]
) -> None:
    memory = SectionMemory()
    path = tmp_path / "m.yml"
    data = config_data(3)
    write(path, data, "json")
    first = load_config(str(path), memory)
    validated.clear()
    data["services"] = [dict(reversed(list(service.items()))) for service in data["services"]]
    write(path, data, "json")
    second = load_config(str(path), memory)
    assert len(validated) == 3
    assert kept(second, first) == [True, True, True]


def test_a_changed_check_parameter_is_not_skipped(tmp_path: Path, form: str) -> None:
    data = config_data()
    data["services"][2]["checks"] = [{"type": "tcp", "timeout": 0.5}]
    first, second = reload_of(tmp_path / "m.yml", data, form)
    assert second.services[0] is first.services[0]
    assert second.services[2] is not first.services[2]
    assert [rs.checks[0].timing.timeout for rs in second.services[2].real_servers] == [0.5, 0.5]


def test_a_changed_global_section_reads_every_service_again(tmp_path: Path, form: str) -> None:
    first, second = reload_of(tmp_path / "m.yml", config_data(timeout=2.0), form)
    assert not any(new is old for new, old in zip(second.services, first.services))
    assert second.services[0].real_servers[0].checks[0].timing.timeout == 2.0


def test_a_bad_reload_names_the_field_and_keeps_the_last_good_load(
    tmp_path: Path, form: str
) -> None:
    path = tmp_path / "m.yml"
    memory = SectionMemory()
    write(path, config_data(), form)
    good = load_config(str(path), memory)
    bad = config_data()
    bad["services"][1]["real_servers"][1]["weight"] = -1
    write(path, bad, form)
    with pytest.raises(ConfigError) as error:
        load_config(str(path), memory)
    assert any(message.startswith("services[1].real_servers[1]") for message in error.value.errors)
    write(path, config_data(), form)
    assert load_config(str(path), memory) is good


def test_a_section_with_a_problem_is_reported_again(tmp_path: Path) -> None:
    """Only valid sections are remembered: the same bad section fails twice."""
    path = tmp_path / "m.yml"
    memory = SectionMemory()
    bad = config_data()
    bad["services"][0]["port"] = 99999
    for attempt in ("first", "second"):
        write(path, bad, "yaml")
        with pytest.raises(ConfigError, match=r"services\[0\]") as refused:
            load_config(str(path), memory)
        assert refused.value.errors, attempt


def test_a_duplicate_service_across_remembered_sections_is_refused(tmp_path: Path) -> None:
    data = config_data()
    data["services"].append(data["services"][0])  # the same text: remembered
    with pytest.raises(ConfigError, match=r"services\[3\]: duplicate of services\[0\]"):
        reload_of(tmp_path / "m.yml", data, "yaml")


SAME_AS_A_WHOLE_READ = {
    "anchors": "global: &g {}\nservices:\n  - address: 10.0.0.1\n    port: 80\n"
    "    real_servers: [{address: 10.0.1.1}]\n",
    "items at column 0": "services:\n- address: 10.0.0.1\n  port: 80\n"
    "  real_servers: [{address: 10.0.1.1}]\n- address: 10.0.0.2\n  port: 80\n",
    "a quoted value over a line that looks like an item": "services:\n"
    '  - address: 10.0.0.1\n    port: 80\n    persistence_engine: "sip\n  - x"\n',
    "comments and blank lines": "# top\nservices:\n\n  # first\n  - address: 10.0.0.1\n"
    "    port: 80\n# between\n  - address: 10.0.0.2\n    port: 80\nglobal: {}\n",
    "a block scalar that keeps its blank lines": "services:\n  - address: 10.0.0.1\n"
    "    port: 80\n    persistence_engine: |+\n      sip\n\n# after\n  - address: 10.0.0.2\n",
}


@pytest.mark.parametrize("text", SAME_AS_A_WHOLE_READ.values(), ids=list(SAME_AS_A_WHOLE_READ))
def test_a_cut_file_loads_as_a_whole_read_does(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.yml"
    path.write_text(text)
    try:
        whole: object = load_config(str(path))
    except ConfigError as error:
        whole = error.errors
    try:
        cut: object = load_config(str(path), SectionMemory())
    except ConfigError as error:
        cut = error.errors
    assert cut == whole


def test_split_declines_what_could_tie_sections_together() -> None:
    assert split_services("services:\n  - &a {address: 10.0.0.1}\n  - *a\n") is None
    assert split_services("services: [{address: 10.0.0.1}]\n") is None
    assert split_services('{"services": []}') is None
    sections = split_services("global: {}\nservices:\n  - a: 1\n  - b: 2\nstatic_services: []\n")
    assert sections is not None
    assert sections.head == "global: {}\nservices: []\nstatic_services: []\n"
    assert [parse() for _digest, parse in sections.services] == [{"a": 1}, {"b": 2}]


def test_checks_unchanged_tells_a_weight_from_a_check(tmp_path: Path) -> None:
    weight = config_data()
    weight["services"][1]["real_servers"][0]["weight"] = 7
    first, second = reload_of(tmp_path / "a.yml", weight, "yaml")
    assert checks_unchanged(first, second)
    check = config_data()
    check["services"][1]["checks"] = [{"type": "tcp", "port": 81}]
    first, second = reload_of(tmp_path / "b.yml", check, "yaml")
    assert not checks_unchanged(first, second)
    fewer = config_data(services=2)
    first, second = reload_of(tmp_path / "c.yml", fewer, "yaml")
    assert not checks_unchanged(first, second)


def test_a_comment_edited_between_services_changes_neither(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    memory = SectionMemory()
    text = yaml.safe_dump(config_data())
    path.write_text(text)
    first = load_config(str(path), memory)
    marker = "- address: 10.0.0.2"
    path.write_text(text.replace(marker, "# the second\n\n" + marker) + "# the end\n")
    second = load_config(str(path), memory)
    assert all(new is old for new, old in zip(second.services, first.services))
