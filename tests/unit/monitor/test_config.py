"""haecs_monitor.config.load: the contract of docs/design/monitor-config.md."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from haecs_monitor.checks import CHECKS
from haecs_monitor.checks.registry import CHECK_TYPES
from haecs_monitor.config.load import (
    CheckTiming,
    ConfigError,
    MonitorConfig,
    load_config,
    parse_config,
)

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import ServiceKey

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONTRACT = os.path.join(ROOT, "docs", "design", "monitor-config.md")


def documented_example() -> str:
    """The YAML block of the config contract: it must stay valid."""
    with open(CONTRACT, encoding="utf-8") as handle:
        text = handle.read()
    return text.split("```yaml\n", 1)[1].split("```", 1)[0]


def base() -> dict[str, Any]:
    return {
        "services": [
            {
                "protocol": "tcp",
                "address": "10.0.0.1",
                "port": 80,
                "checks": [{"type": "tcp"}],
                "real_servers": [{"address": "10.0.2.1", "port": 80, "forwarding": "masq"}],
            }
        ]
    }


def errors_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def with_change(path: str, value: object) -> dict[str, Any]:
    """base() with one value set, path like 'services.0.checks.0.timeout'."""
    data = base()
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        if part.isdigit():
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


def test_documented_example_loads(tmp_path: Any) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(documented_example())
    config = load_config(str(path))
    assert isinstance(config, MonitorConfig)
    settings = config.settings
    assert settings.listen is not None and settings.listen.port == 9180
    assert settings.notify is not None and settings.notify.command == (
        "/usr/local/bin/page",
        "--quiet",
    )
    service = config.services[0]
    assert service.key == ServiceKey.for_address("tcp", "10.0.0.1", 80)
    assert service.service.scheduler == "wrr"
    assert service.quorum is not None and service.quorum.min_healthy_weight == 2
    assert service.quorum.hysteresis == 1
    assert [s.address for s in service.sorry_servers] == ["10.0.3.1"]
    (real_server,) = service.real_servers
    assert real_server.server.weight == 3
    (check,) = real_server.checks  # the server's own checks replace the service's
    assert check.type == "http"
    assert check.timing[:4] == (1.0, 0.5, 1, 3)
    assert check.param("path") == "/health"
    assert check.param("expect_status") == ((200, 299),)
    assert (check.address, check.port) == ("10.0.2.1", 80)
    assert service.checks == (check,)


def test_minimal_defaults() -> None:
    config = parse_config(base())
    settings = config.settings
    assert settings.name == "default"
    assert settings.control_socket == "/run/haecs/monitor-default.sock"
    assert settings.state_file == "/var/lib/haecs/monitor-default.state"
    assert settings.check_defaults == CheckTiming()
    assert settings.on_exit == "keep" and settings.log_format == "json"
    assert settings.script_user == "nobody" and settings.listen is None and settings.notify is None
    service = config.services[0]
    assert service.on_failure == "remove" and service.slow_start == 0 and service.quorum is None
    (check,) = service.real_servers[0].checks
    assert check.timing == CheckTiming()
    assert (check.address, check.port, check.params) == ("10.0.2.1", 80, ())


def test_name_sets_default_paths() -> None:
    data = base()
    data["global"] = {"name": "web-1"}
    settings = parse_config(data).settings
    assert settings.control_socket == "/run/haecs/monitor-web-1.sock"
    assert settings.state_file == "/var/lib/haecs/monitor-web-1.state"


def test_empty_services_and_missing_keys() -> None:
    assert parse_config({}).services == ()
    assert parse_config({"services": []}).services == ()
    assert parse_config({"global": None, "services": None}).services == ()


def test_defaults_cascade_global_service_server_check() -> None:
    data = base()
    data["global"] = {"check_defaults": {"interval": 10, "timeout": 4, "rise": 5, "jitter": 0}}
    service = data["services"][0]
    service["check_defaults"] = {"interval": 8, "fall": 7}
    service["checks"] = [{"type": "tcp", "timeout": 3}]
    service["real_servers"] = [
        {
            "address": "10.0.2.1",
            "port": 80,
            "forwarding": "masq",
            "check_defaults": {"rise": 1, "down_interval": 9},
        },
        {"address": "10.0.2.2", "port": 80, "forwarding": "masq"},
    ]
    config = parse_config(data)
    first, second = (rs.checks[0] for rs in config.services[0].real_servers)
    assert first.timing == CheckTiming(8.0, 3.0, 1, 7, 0.5, 9.0, 0.0)
    assert second.timing == CheckTiming(8.0, 3.0, 5, 7, 0.5, 5.0, 0.0)


def test_real_server_checks_replace_service_checks() -> None:
    data = base()
    data["services"][0]["real_servers"] = [
        {"address": "10.0.2.1", "port": 80, "forwarding": "masq", "checks": []},
        {
            "address": "10.0.2.2",
            "port": 80,
            "forwarding": "masq",
            "checks": [{"type": "smtp", "port": 25}],
        },
    ]
    first, second = parse_config(data).services[0].real_servers
    assert first.checks == ()
    assert [(c.type, c.address, c.port) for c in second.checks] == [("smtp", "10.0.2.2", 25)]


def test_check_target_override() -> None:
    data = with_change("services.0.checks.0.address", "192.0.2.9")
    data["services"][0]["checks"][0]["port"] = 8080
    check = parse_config(data).services[0].real_servers[0].checks[0]
    assert (check.address, check.port) == ("192.0.2.9", 8080)
    assert check.describe() == "tcp 192.0.2.9:8080"


@pytest.mark.parametrize(
    "path", ["services.0.port", "services.0.checks.0.port", "services.0.real_servers.0.port"]
)
def test_the_same_value_gets_the_same_answer_everywhere(path: str) -> None:
    """One integer rule (the engine's integer_value) for a service's port, a
    check's and a real server's: "80" is 80, "8x" is refused naming the field."""
    config = parse_config(with_change(path, "80"))
    service = config.services[0]
    assert {service.key.port, service.real_servers[0].checks[0].port} == {80}
    errors = errors_of(with_change(path, "8x"))
    assert len(errors) == 1 and "must be an integer" in errors[0]
    assert errors[0].startswith(path.replace(".0.", "[0].").replace(".0", "[0]"))


def test_dedup_keys_shared_across_services() -> None:
    data = base()
    other = copy.deepcopy(data["services"][0])
    other["port"] = 8080  # another service, same real server 10.0.2.1:80 (masq maps ports)
    data["services"].append(other)
    third = copy.deepcopy(other)
    third["port"] = 8081
    third["check_defaults"] = {"interval": 3}  # other timing: not identical
    data["services"].append(third)
    config = parse_config(data)
    keys = [s.real_servers[0].checks[0].dedup_key for s in config.services]
    assert keys[0] == keys[1] != keys[2]
    probes = [s.real_servers[0].checks[0].probe_key for s in config.services]
    assert probes[0] == probes[1] == probes[2]
    assert len(config.unique_checks()) == 2


def test_dedup_key_differs_by_target_and_params() -> None:
    data = base()
    data["services"][0]["real_servers"].append(
        {"address": "10.0.2.2", "port": 80, "forwarding": "masq"}
    )
    data["services"][0]["real_servers"].append(
        {
            "address": "10.0.2.1",
            "port": 81,
            "forwarding": "masq",
            "checks": [{"type": "tcp", "port": 80, "jitter": 0.1}],
        }
    )
    config = parse_config(data)
    keys = [rs.checks[0].dedup_key for rs in config.services[0].real_servers]
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]  # same target through the port override, same timing
    http_a = with_change("services.0.checks", [{"type": "http", "path": "/a"}])
    http_b = with_change("services.0.checks", [{"type": "http", "path": "/b"}])
    key_a = parse_config(http_a).services[0].real_servers[0].checks[0].dedup_key
    key_b = parse_config(http_b).services[0].real_servers[0].checks[0].dedup_key
    assert key_a != key_b


def test_all_check_types_parse_with_normalised_params() -> None:
    checks = [
        {"type": "tcp"},
        {
            "type": "http",
            "path": "/h",
            "host": "www.example.org",
            "method": "HEAD",
            "expect_status": [200, "301-302", " 404 "],
            "max_bytes": 10,
        },
        {
            "type": "https",
            "body_sha256": "A" * 64,
            "body_regex": "o+k",
            "verify_tls": True,
            "sni": "www.example.org",
            "ca_file": "/etc/ssl/ca.pem",
            "client_cert": "/etc/ssl/c.pem",
            "client_key": "/etc/ssl/c.key",
            "expect_status": "200",
        },
        {"type": "smtp", "helo": "director.example.org", "port": 25},
        {
            "type": "dns",
            "query": "www.example.org",
            "qtype": "aaaa",
            "expect": ["2001:DB8::1"],
            "port": 53,
        },
        {
            "type": "dns",
            "query": "example.org",
            "qtype": "MX",
            "protocol": "tcp",
            "expect": "10 Mail.Example.org.",
            "port": 53,
        },
        {
            "type": "script",
            "command": ["/bin/true", "x"],
            "env": {"TOKEN": "s3cret", "N": 3},
            "user": "daemon",
        },
        {"type": "script", "command": ["/bin/true"]},
    ]
    data = with_change("services.0.checks", checks)
    specs = parse_config(data).services[0].real_servers[0].checks
    assert [s.type for s in specs] == [
        "tcp",
        "http",
        "https",
        "smtp",
        "dns",
        "dns",
        "script",
        "script",
    ]
    http, https, smtp, dns_aaaa, dns_mx, script, script_default = specs[1:]
    assert http.param("expect_status") == ((200, 200), (301, 302), (404, 404))
    assert http.param("method") == "HEAD" and http.integer("max_bytes", 0) == 10
    assert https.param("body_sha256") == "a" * 64 and https.flag("verify_tls", False) is True
    assert https.param("expect_status") == ((200, 200),)
    assert https.param("path") == "/" and https.integer("max_bytes", 0) == 65536
    assert smtp.text("helo") == "director.example.org"
    assert dns_aaaa.texts("expect") == ("2001:db8::1",) and dns_aaaa.text("qtype") == "AAAA"
    assert dns_aaaa.text("query") == "www.example.org."
    assert dns_mx.texts("expect") == ("10 mail.example.org",) and dns_mx.text("protocol") == "tcp"
    assert script.texts("command") == ("/bin/true", "x")
    assert script.pairs("env") == (("N", "3"), ("TOKEN", "s3cret"))
    assert script.text("user") == "daemon"
    assert script_default.text("user") == "nobody"  # global.script_user
    assert hash(script.dedup_key)


def test_script_user_default_follows_global() -> None:
    data = with_change("services.0.checks", [{"type": "script", "command": ["/bin/true"]}])
    data["global"] = {"script_user": "haecs-check"}
    spec = parse_config(data).services[0].real_servers[0].checks[0]
    assert spec.text("user") == "haecs-check"


def test_every_check_type_has_an_implementation() -> None:
    assert set(CHECKS) == set(CHECK_TYPES)


def test_fwmark_service_checks_need_a_port() -> None:
    data = {
        "services": [
            {
                "fwmark": 7,
                "checks": [{"type": "tcp"}, {"type": "script", "command": ["/bin/true"]}],
                "real_servers": [{"address": "10.0.2.1"}],
            }
        ]
    }
    assert errors_of(data) == [
        "services[0].checks[0].port: is required: the real server's port is 0 (a fwmark or all-ports service)"
    ]
    data["services"][0]["checks"][0]["port"] = 443
    specs = parse_config(data).services[0].real_servers[0].checks
    assert [(s.type, s.port) for s in specs] == [("tcp", 443), ("script", 0)]


# ---------------------------------------------------------------- errors

ERROR_CASES = [
    # (path in base() to set, value, expected error)
    ("global.check_defaults.timeout", 0, "global.check_defaults.timeout: must be greater than 0"),
    (
        "global.check_defaults.interval",
        -1,
        "global.check_defaults.interval: must be greater than 0",
    ),
    (
        "global.check_defaults.interval",
        "2",
        "global.check_defaults.interval: must be a number greater than 0",
    ),
    (
        "global.check_defaults.interval",
        float("nan"),
        "global.check_defaults.interval: must be a finite number",
    ),
    ("global.check_defaults.interval", True, "global.check_defaults.interval: must be a number"),
    (
        "global.check_defaults.rise",
        0,
        "global.check_defaults.rise: must be an integer from 1 to 1000",
    ),
    (
        "global.check_defaults.fall",
        1.5,
        "global.check_defaults.fall: must be an integer from 1 to 1000",
    ),
    (
        "global.check_defaults.jitter",
        1,
        "global.check_defaults.jitter: must be at least 0 and at most 0.9",
    ),
    (
        "global.check_defaults.intreval",
        3,
        "global.check_defaults.intreval: unknown option for check_defaults",
    ),
    ("global.check_defaults", [], "global.check_defaults: must be a mapping"),
    (
        "global.check_defaults.timeout",
        5,
        "global.check_defaults.timeout: must be less than interval (2), got 5",
    ),
    ("global.name", "bad name", "global.name: must be letters, digits"),
    ("global.name", 5, "global.name: must be a non-empty string"),
    ("global.control_socket", "relative.sock", "global.control_socket: must be an absolute path"),
    ("global.state_file", "", "global.state_file: must be a non-empty string"),
    ("global.reconcile_interval", 0, "global.reconcile_interval: must be greater than 0"),
    ("global.drain_timeout", -1, "global.drain_timeout: must be at least 0 and at most 86400"),
    ("global.drain_timeout", "1m", "global.drain_timeout: must be a number"),
    ("global.log_format", "xml", "global.log_format: must be one of json, text"),
    ("global.on_exit", "flush", "global.on_exit: must be one of keep, remove"),
    ("global.script_user", "no body", "global.script_user: must be a user name"),
    (
        "global.listen",
        {"address": "127.0.0.1", "port": 9180},
        "global.listen.token_file: is required",
    ),
    (
        "global.listen",
        {"address": "x", "port": 0, "token_file": "t"},
        "global.listen.address: must be an IPv4 or IPv6 address",
    ),
    (
        "global.listen",
        {"address": "::", "port": 70000, "token_file": "/t"},
        "global.listen.port: must be an integer from 1 to 65535",
    ),
    (
        "global.listen",
        {"address": "::", "port": 1, "token_file": "t"},
        "global.listen.token_file: must be an absolute path",
    ),
    (
        "global.listen",
        {"address": "::", "port": 1, "token_file": "/t", "tls": 1},
        "global.listen.tls: unknown option",
    ),
    (
        "global.notify",
        {"command": "page --quiet"},
        "global.notify.command: must be a list of arguments (never a shell string)",
    ),
    ("global.notify", {"command": []}, "global.notify.command: must be a non-empty list"),
    ("global.notify", {"command": ["page"]}, "global.notify.command[0]: must be an absolute path"),
    ("global.notify", {"command": ["/bin/page", 5]}, "global.notify.command[1]: must be a string"),
    ("global.notify", {"timeout": 1}, "global.notify.command: is required"),
    (
        "global.notify",
        {"command": ["/bin/page"], "timeout": 0},
        "global.notify.timeout: must be greater than 0",
    ),
    ("global.nmae", "x", "global.nmae: unknown option; allowed:"),
    ("global", [1], "global: must be a mapping"),
    ("servicse", [], "servicse: unknown option; allowed: global, services"),
    ("services", {}, "services: must be a list"),
    ("services.0.adress", "10.0.0.2", "services[0].adress: unknown option for a service"),
    ("services.0.address", "10.0.0.300", "services[0].address: must be an IPv4 or IPv6 address"),
    ("services.0.scheduler", "fast", "services[0].scheduler: must be one of"),
    ("services.0.port", "²", "services[0].port: must be an integer from 0 to 65535"),
    (
        "services.0.port",
        10**5000,
        "services[0].port: must be an integer from 0 to 65535, got a 16610-bit number",
    ),
    ("services.0.on_failure", "drop", "services[0].on_failure: must be one of remove, inhibit"),
    ("services.0.slow_start", -1, "services[0].slow_start: must be at least 0"),
    (
        "services.0.quorum",
        {"hysteresis": 1},
        "services[0].quorum: needs min_healthy_weight or min_healthy_fraction",
    ),
    (
        "services.0.quorum",
        {"min_healthy_fraction": 1.5},
        "services[0].quorum.min_healthy_fraction: must be at least 0 and at most 1",
    ),
    (
        "services.0.quorum",
        {"min_healthy_weight": -1},
        "services[0].quorum.min_healthy_weight: must be an integer",
    ),
    (
        "services.0.quorum",
        {"min_healthy_weight": 1, "hysterisis": 1},
        "services[0].quorum.hysterisis: unknown option",
    ),
    (
        "services.0.sorry_servers",
        [{"address": "10.0.2.1", "port": 80, "forwarding": "masq"}],
        "services[0].sorry_servers[0]: is also a real server",
    ),
    (
        "services.0.sorry_servers",
        [{"address": "10.0.3.1", "checks": []}],
        "services[0].sorry_servers[0].checks: unknown option for a sorry server",
    ),
    (
        "services.0.sorry_servers",
        [{"address": "10.0.3.1", "weight": -2}],
        "services[0].sorry_servers[0].weight: must be an integer",
    ),
    ("services.0.sorry_servers", [7], "services[0].sorry_servers[0]: must be a mapping"),
    (
        "services.0.real_servers",
        [{"address": "10.0.2.1", "port": 80, "wieght": 2}],
        "services[0].real_servers[0].wieght: unknown option for a real server",
    ),
    ("services.0.real_servers", [{"port": 80}], "services[0].real_servers[0].address: is required"),
    (
        "services.0.real_servers",
        [{"address": "2001:db8::1", "port": 80}],
        "services[0].real_servers[0].address: ipv6 real server on an ipv4 service",
    ),
    ("services.0.real_servers", "10.0.2.1", "services[0].real_servers: must be a list"),
    (
        "services.0.real_servers",
        [{"address": "10.0.2.1", "port": 80, "check_defaults": {"timeout": 3}}],
        "services[0].real_servers[0].check_defaults.timeout: must be less than interval (2), got 3",
    ),
    ("services.0.checks", [{"interval": 1}], "services[0].checks[0].type: is required"),
    (
        "services.0.checks",
        [{"type": "ping"}],
        "services[0].checks[0].type: must be one of tcp, http, https, smtp, dns, script",
    ),
    (
        "services.0.checks",
        [{"type": "tcp", "path": "/"}],
        "services[0].checks[0].path: unknown option for a tcp check",
    ),
    (
        "services.0.checks",
        [{"type": "tcp", "timeout": 0}],
        "services[0].checks[0].timeout: must be greater than 0",
    ),
    (
        "services.0.checks",
        [{"type": "tcp", "timeout": 2}],
        "services[0].checks[0].timeout: must be less than interval (2), got 2",
    ),
    (
        "services.0.checks",
        [{"type": "tcp", "port": 0}],
        "services[0].checks[0].port: must be an integer from 1 to 65535",
    ),
    (
        "services.0.checks",
        [{"type": "tcp", "address": "224.0.0.1"}],
        "services[0].checks[0].address: must be a unicast address",
    ),
    ("services.0.checks", ["tcp"], "services[0].checks[0]: must be a mapping"),
    (
        "services.0.checks",
        [{"type": "http", "path": "health"}],
        "services[0].checks[0].path: must start with /",
    ),
    (
        "services.0.checks",
        [{"type": "http", "path": "/a b"}],
        "services[0].checks[0].path: must be a URL path without spaces",
    ),
    (
        "services.0.checks",
        [{"type": "http", "host": "a\r\nX-Evil: 1"}],
        "services[0].checks[0].host: must be a host name",
    ),
    (
        "services.0.checks",
        [{"type": "http", "method": "POST"}],
        "services[0].checks[0].method: must be one of GET, HEAD",
    ),
    (
        "services.0.checks",
        [{"type": "http", "expect_status": []}],
        "services[0].checks[0].expect_status: must list at least one",
    ),
    (
        "services.0.checks",
        [{"type": "http", "expect_status": ["299-200"]}],
        "services[0].checks[0].expect_status[0]: must be a status code",
    ),
    (
        "services.0.checks",
        [{"type": "http", "expect_status": [700]}],
        "services[0].checks[0].expect_status[0]: must be a status code",
    ),
    (
        "services.0.checks",
        [{"type": "http", "expect_status": [True]}],
        "services[0].checks[0].expect_status[0]: must be a status code",
    ),
    (
        "services.0.checks",
        [{"type": "http", "expect_status": {"a": 1}}],
        "services[0].checks[0].expect_status: must be a list",
    ),
    (
        "services.0.checks",
        [{"type": "http", "body_regex": "("}],
        "services[0].checks[0].body_regex: is not a valid regular expression",
    ),
    (
        "services.0.checks",
        [{"type": "http", "body_sha256": "abc"}],
        "services[0].checks[0].body_sha256: must be 64 hexadecimal digits",
    ),
    (
        "services.0.checks",
        [{"type": "http", "max_bytes": 0}],
        "services[0].checks[0].max_bytes: must be an integer from 1",
    ),
    (
        "services.0.checks",
        [{"type": "http", "method": "HEAD", "body_regex": "x"}],
        "services[0].checks[0].body_regex: needs method GET",
    ),
    (
        "services.0.checks",
        [{"type": "http", "verify_tls": False}],
        "services[0].checks[0].verify_tls: unknown option for a http check",
    ),
    (
        "services.0.checks",
        [{"type": "https", "verify_tls": "no"}],
        "services[0].checks[0].verify_tls: must be true or false",
    ),
    (
        "services.0.checks",
        [{"type": "https", "client_key": "/k"}],
        "services[0].checks[0].client_key: needs client_cert",
    ),
    (
        "services.0.checks",
        [{"type": "https", "ca_file": "ca.pem"}],
        "services[0].checks[0].ca_file: must be an absolute path",
    ),
    (
        "services.0.checks",
        [{"type": "https", "ca_file": "/ca", "verify_tls": False}],
        "services[0].checks[0].ca_file: has no effect with verify_tls false",
    ),
    (
        "services.0.checks",
        [{"type": "https", "sni": "-bad name"}],
        "services[0].checks[0].sni: must be a host name",
    ),
    (
        "services.0.checks",
        [{"type": "smtp", "helo": "a b"}],
        "services[0].checks[0].helo: must be a host name",
    ),
    ("services.0.checks", [{"type": "dns"}], "services[0].checks[0].query: is required"),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a..b"}],
        "services[0].checks[0].query: is not a valid DNS name",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "qtype": "BOGUS"}],
        "services[0].checks[0].qtype: is not a DNS record type",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "protocol": "doh"}],
        "services[0].checks[0].protocol: must be one of udp, tcp",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "expect": ["x"]}],
        "services[0].checks[0].expect[0]: must be an IPv4 or IPv6 address",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "expect": [""]}],
        "services[0].checks[0].expect[0]: must be a non-empty string",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "expect": []}],
        "services[0].checks[0].expect: must list at least one answer",
    ),
    (
        "services.0.checks",
        [{"type": "dns", "query": "a", "expect": 5}],
        "services[0].checks[0].expect: must be a list",
    ),
    ("services.0.checks", [{"type": "script"}], "services[0].checks[0].command: is required"),
    (
        "services.0.checks",
        [{"type": "script", "command": "/bin/check --x"}],
        "services[0].checks[0].command: must be a list of arguments (never a shell string)",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["check"]}],
        "services[0].checks[0].command[0]: must be an absolute path",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "env": {"1X": "a"}}],
        "services[0].checks[0].env.1X: is not a valid environment variable name",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "env": {"X": ["secret"]}}],
        "services[0].checks[0].env.X: must be a string (or a number)",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "env": {"X": "a\0b"}}],
        "services[0].checks[0].env.X: must not contain a NUL",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "env": {"X": 10**5000}}],
        "services[0].checks[0].env.X: must be a string (or a number)",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "env": []}],
        "services[0].checks[0].env: must be a mapping",
    ),
    (
        "services.0.checks",
        [{"type": "script", "command": ["/bin/x"], "user": "a:b"}],
        "services[0].checks[0].user: must be a user name",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), ERROR_CASES, ids=[case[2][:70] for case in ERROR_CASES]
)
def test_error_paths(path: str, value: object, expected: str) -> None:
    data = with_change(path, value)
    errors = errors_of(data)
    assert any(error.startswith(expected) for error in errors), errors


def test_secret_env_value_never_in_errors() -> None:
    data = with_change(
        "services.0.checks", [{"type": "script", "command": ["/bin/x"], "env": {"X": ["hunter2"]}}]
    )
    assert "hunter2" not in "\n".join(errors_of(data))


def test_all_errors_are_collected() -> None:
    data = base()
    data["global"] = {"log_format": "xml", "check_defaults": {"rise": 0}}
    data["services"][0]["checks"] = [{"type": "tcp", "timeout": -1}, {"type": "http", "path": "x"}]
    data["services"][0]["real_servers"].append(
        {"address": "10.0.2.2", "port": 80, "forwarding": "masq", "bogus": 1}
    )
    data["services"].append(
        {
            "address": "nowhere",
            "port": 80,
            "real_servers": [{"address": "10.0.2.1", "checks": [{"type": "tcp", "fall": 0}]}],
        }
    )
    errors = errors_of(data)
    assert errors == [
        "global.check_defaults.rise: must be an integer from 1 to 1000, got 0",
        "global.log_format: must be one of json, text, got 'xml'",
        "services[0].checks[0].timeout: must be greater than 0 and at most 86400, got -1",
        "services[0].checks[1].path: must start with /, got 'x'",
        "services[0].real_servers[1].bogus: unknown option for a real server; allowed: address, "
        "check_defaults, checks, forwarding, lower_threshold, port, tunnel_checksum, tunnel_port, "
        "tunnel_type, upper_threshold, weight",
        "services[1].address: must be an IPv4 or IPv6 address, got 'nowhere'",
        "services[1].real_servers[0].checks[0].fall: must be an integer from 1 to 1000, got 0",
    ]


def test_static_services_are_keys_and_not_monitored_ones() -> None:
    data = base()
    data["static_services"] = [
        {"protocol": "tcp", "address": "10.0.0.1", "port": 8080},
        {"fwmark": 7, "family": "ipv6"},
    ]
    config = parse_config(data)
    assert config.static_services == {
        ServiceKey.for_address("tcp", "10.0.0.1", 8080),
        ServiceKey.for_fwmark(7, "ipv6"),
    }
    data["static_services"] = [
        {"protocol": "tcp", "address": "10.0.0.1", "port": 80},
        {"protocol": "tcp", "address": "10.0.0.1", "port": 8080, "scheduler": "rr"},
        {"protocol": "tcp", "address": "nowhere", "port": 80},
        "tcp 10.0.0.1:80",
    ]
    problems = errors_of(data)
    assert problems[0] == (
        "static_services[0]: tcp 10.0.0.1:80 is also in services: a service is monitored or static"
    ), problems
    assert problems[1].startswith("static_services[1].scheduler: unknown option"), problems
    assert problems[2].startswith("static_services[2].address: "), problems
    assert problems[3] == (
        "static_services[3]: must be a service key (protocol, address, port or fwmark), "
        "got 'tcp 10.0.0.1:80'"
    ), problems
    assert errors_of({"static_services": {"port": 80}}) == [
        "static_services: must be a list, got {'port': 80}"
    ]


def test_duplicate_services_and_servers() -> None:
    data = base()
    data["services"].append(copy.deepcopy(data["services"][0]))
    data["services"][1]["address"] = "10.0.0.1"
    data["services"][0]["real_servers"].append(
        {"address": "10.0.2.1", "port": 80, "forwarding": "masq"}
    )
    data["services"][0]["sorry_servers"] = [
        {"address": "10.0.3.1"},
        {"address": "10.0.3.1", "port": 80},
    ]
    errors = errors_of(data)
    assert (
        "services[0].real_servers[1]: duplicate of services[0].real_servers[0] (10.0.2.1 port 80)"
        in errors
    )
    assert (
        "services[0].sorry_servers[1]: duplicate of services[0].sorry_servers[0] (10.0.3.1 port 80)"
        in errors
    )
    assert "services[1]: duplicate of services[0] (tcp 10.0.0.1:80)" in errors


def test_duplicate_fwmark_services() -> None:
    data = {
        "services": [
            {"fwmark": 3},
            {"fwmark": 3, "family": "ipv4"},
            {"fwmark": 3, "family": "ipv6"},
        ]
    }
    assert errors_of(data) == ["services[1]: duplicate of services[0] (fwmark 3 (ipv4))"]


def test_timing_conflict_reported_once_where_it_appears() -> None:
    data = base()
    data["global"] = {"check_defaults": {"timeout": 5}}
    data["services"][0]["real_servers"].append(
        {"address": "10.0.2.2", "port": 80, "forwarding": "masq"}
    )
    assert errors_of(data) == [
        "global.check_defaults.timeout: must be less than interval (2), got 5"
    ]
    # a lower level that sets the pair itself is judged on its own
    data["services"][0]["checks"] = [{"type": "tcp", "interval": 3, "timeout": 4}]
    assert errors_of(data) == [
        "global.check_defaults.timeout: must be less than interval (2), got 5",
        "services[0].checks[0].timeout: must be less than interval (3), got 4",
    ]
    # one that repairs it adds no error of its own
    data["services"][0]["checks"] = [{"type": "tcp", "interval": 6}]
    assert errors_of(data) == [
        "global.check_defaults.timeout: must be less than interval (2), got 5"
    ]
    data["global"] = {"check_defaults": {"timeout": 5, "interval": 6}}
    data["services"][0]["check_defaults"] = {"interval": 4}
    assert errors_of(data) == [
        "services[0].check_defaults.timeout: must be less than interval (4), got 5"
    ]


def test_top_level_shapes() -> None:
    assert errors_of(None) == [
        "the configuration is empty: expected a mapping with global and services"
    ]
    assert errors_of([1, 2])[0].startswith(
        "(top level): must be a mapping with global and services"
    )
    assert errors_of({1: 2}) == ["(top level): option names must be strings, got 1"]


def test_deep_nesting_is_a_config_error() -> None:
    deep: Any = []
    for _unused in range(100000):
        deep = [deep]
    data = with_change("services.0.checks", [{"type": "dns", "query": "a", "expect": deep}])
    assert errors_of(data)


# ---------------------------------------------------------------- files


def write(tmp_path: Any, text: str, name: str = "monitor.yaml") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def load_errors(path: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.errors


def test_yaml_syntax_error_has_line_and_column(tmp_path: Any) -> None:
    path = write(tmp_path, "services:\n  - address: 10.0.0.1\n    port: [80\n")
    (error,) = load_errors(path)
    assert error.startswith(path + ": line ")
    assert "Traceback" not in error


def test_yaml_bad_indentation(tmp_path: Any) -> None:
    path = write(tmp_path, "global:\n  name: a\n name: b\n")
    (error,) = load_errors(path)
    assert error.startswith(path + ": line 3, column 2:")


def test_yaml_duplicate_key_is_an_error(tmp_path: Any) -> None:
    path = write(tmp_path, "global:\n  log_format: json\n  log_format: text\n")
    (error,) = load_errors(path)
    assert error == path + ": line 3, column 3: found duplicate key 'log_format'"


def test_yaml_merge_keys_may_override(tmp_path: Any) -> None:
    text = (
        "x-defaults: &d {protocol: tcp, port: 80, address: 10.0.0.1}\n"
        "services:\n  - <<: *d\n    port: 81\n"
    )
    path = write(tmp_path, text)
    assert load_errors(path) == [
        "x-defaults: unknown option; allowed: global, services, static_services"
    ]
    path = write(
        tmp_path,
        "services:\n  - &s {protocol: tcp, port: 80, address: 10.0.0.1}\n  - <<: *s\n    port: 81\n",
    )
    ports = [s.key.port for s in load_config(path).services]
    assert ports == [80, 81]


def test_yaml_unsafe_tag_rejected(tmp_path: Any) -> None:
    path = write(tmp_path, "global: !!python/object/apply:os.system ['true']\n")
    (error,) = load_errors(path)
    assert "line 1" in error


def test_yaml_bad_values(tmp_path: Any) -> None:
    (error,) = load_errors(write(tmp_path, "global: {name: 2024-13-45}\n"))
    assert "invalid value" in error
    (error,) = load_errors(write(tmp_path, "global: " + "[" * 20000 + "]" * 20000 + "\n"))
    # PyYAML 6.0.4 stops at its nesting limit (the file, line and column);
    # older releases load the lists, and the check of `global` refuses them.
    assert error.startswith(os.path.join(str(tmp_path), "monitor.yaml")) or error.startswith(
        "global: must be a mapping, got [[[["
    )


def test_empty_file(tmp_path: Any) -> None:
    assert load_errors(write(tmp_path, "")) == [
        "the configuration is empty: expected a mapping with global and services"
    ]


def test_unreadable_files(tmp_path: Any) -> None:
    missing = os.path.join(str(tmp_path), "nope.yaml")
    assert load_errors(missing) == [missing + ": cannot read: No such file or directory"]
    assert load_errors(str(tmp_path))[0].startswith(str(tmp_path) + ": cannot read")
    assert load_errors("a\0b")[0].startswith("'a\\x00b': cannot read")
    binary = os.path.join(str(tmp_path), "bin.yaml")
    with open(binary, "wb") as handle:
        handle.write(b"global: \xff\xfe\n")
    assert load_errors(binary) == [binary + ": not UTF-8 text (byte 8)"]


def test_yaml_unclosed_quote_names_the_line_it_starts_on(tmp_path: Any) -> None:
    text = 'global:\n  name: "abc\n  control_socket: /x\n\n\nservices: []\n'
    path = write(tmp_path, text)
    (error,) = load_errors(path)
    assert error.startswith(path + ": line 7, column 1: found unexpected end of stream")
    assert error.endswith(
        '; it starts at line 2, column 9, while scanning a quoted scalar: name: "abc'
    )


def test_a_real_server_with_one_check_keeps_it_without_a_tuple() -> None:
    import pickle

    from haecs_monitor.config.model import CheckSpec, CheckTiming, RealServerConfig

    from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import RealServer

    server = RealServer("10.0.2.1", 80, "masq")
    one = CheckSpec("tcp", CheckTiming(), "10.0.2.1", 80)
    two = CheckSpec("http", CheckTiming(), "10.0.2.1", 80, (("path", "/"),))
    single, double, none = (
        RealServerConfig(server, (one,)),
        RealServerConfig(server, (one, two)),
        RealServerConfig(server),
    )
    assert single.checks == (one,) and double.checks == (one, two) and none.checks == ()
    assert single._checks is one  # the spec itself: a tuple of one was 48 B more
    assert RealServerConfig(server, (tuple(one),)).checks == (tuple(one),)  # type: ignore[arg-type]
    # equal and hashed by what it holds, whatever the form
    assert single == RealServerConfig(RealServer("10.0.2.1", 80, "masq"), (one,))
    assert hash(single) == hash(RealServerConfig(server, (one,)))
    assert single != double != none != single
    assert single != RealServerConfig(server, (two,))
    assert len({single, double, none, RealServerConfig(server, [one])}) == 3  # type: ignore[arg-type]
    for config in (single, double, none):
        again = pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))
        assert again == config and again.checks == config.checks
        assert copy.deepcopy(config) == config
    assert repr(single) == "RealServerConfig(server=%r, checks=(%r,))" % (server, one)
    with pytest.raises(AttributeError):
        single.server = server  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del single.server
