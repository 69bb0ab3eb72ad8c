"""Property: no input makes the config loader raise anything but ConfigError."""

from __future__ import annotations

from typing import Any

from haecs_monitor.config.load import ConfigError, MonitorConfig, load_config, parse_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEYS = [
    # every option name the loader knows, so fuzzed data reaches deep paths
    "global", "services", "name", "control_socket", "listen", "state_file", "reconcile_interval",
    "drain_timeout",
    "log_format", "notify", "script_user", "on_exit", "check_defaults", "address", "port",
    "token_file", "command", "timeout", "interval", "rise", "fall", "fast_interval",
    "down_interval", "jitter", "protocol", "fwmark", "family", "scheduler", "scheduler_flags",
    "one_packet", "persistence_timeout", "persistence_netmask", "persistence_prefix_length",
    "persistence_engine", "on_failure", "slow_start", "quorum", "min_healthy_weight",
    "min_healthy_fraction", "hysteresis", "sorry_servers", "checks", "real_servers", "forwarding",
    "weight", "upper_threshold", "lower_threshold", "tunnel_type", "tunnel_port",
    "tunnel_checksum", "type", "path", "host", "method", "expect_status", "body_regex",
    "body_sha256", "max_bytes", "verify_tls", "sni", "ca_file", "client_cert", "client_key",
    "helo", "query", "qtype", "expect", "env", "user",
]  # fmt: skip
VALUES = [
    "tcp", "udp", "http", "https", "smtp", "dns", "script", "10.0.0.1", "10.0.2.1", "::1",
    "2001:db8::1", "masq", "route", "tunnel", "gue", "wrr", "sh", "sh-port", "/bin/true",
    "ipv4", "ipv6", "remove", "inhibit", "A", "AAAA", "200-299", "255.255.255.0", "sip",
    "/health", "nobody", "json", "²", "٣", "", " ", "\0", "a\r\nb", "(",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 53, 80, 65535, 65536]),
    st.builds(pow, st.just(10), st.just(5000)),  # too long to print
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(VALUES),
)
keys = st.one_of(
    st.sampled_from(KEYS), st.text(max_size=6), st.integers(), st.none(), st.booleans()
)
data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=40,
)


# cheap to generate: a scalar, or one flat list or mapping of them
leaf = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3),
)


def service_like() -> st.SearchStrategy[dict[str, Any]]:
    """Mostly valid shapes with fuzzed leaves: reaches the engine validators."""
    check = st.fixed_dictionaries(
        {"type": st.sampled_from(["tcp", "http", "https", "smtp", "dns", "script"])},
        optional={key: leaf for key in KEYS[14:] if key != "type"},
    )
    real_server = st.fixed_dictionaries(
        {"address": st.one_of(st.sampled_from(VALUES), scalars)},
        optional={
            "port": scalars,
            "forwarding": scalars,
            "weight": scalars,
            "checks": st.lists(check, max_size=2),
        },
    )
    return st.fixed_dictionaries(
        {"address": st.one_of(st.sampled_from(VALUES), scalars), "port": scalars},
        optional={
            "protocol": scalars,
            "fwmark": scalars,
            "family": scalars,
            "scheduler": scalars,
            "scheduler_flags": leaf,
            "persistence_timeout": scalars,
            "persistence_netmask": scalars,
            "quorum": leaf,
            "sorry_servers": st.lists(real_server, max_size=2),
            "check_defaults": leaf,
            "checks": st.lists(check, max_size=3),
            "real_servers": st.lists(real_server, max_size=3),
        },
    )


def accepts_or_config_error(value: object) -> None:
    try:
        result = parse_config(value)
    except ConfigError as error:
        assert error.errors and all(
            isinstance(message, str) and message for message in error.errors
        )
        return
    assert isinstance(result, MonitorConfig)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data)
def test_arbitrary_data_never_raises_anything_but_config_error(value: object) -> None:
    accepts_or_config_error(value)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["global", "services"]), data))
def test_arbitrary_top_level_sections(value: object) -> None:
    accepts_or_config_error(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(service_like(), max_size=3), st.one_of(st.none(), leaf))
def test_service_shaped_data(services: list[dict[str, Any]], global_section: object) -> None:
    accepts_or_config_error({"services": services, "global": global_section})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200), st.text(alphabet=":-[]{}&*!|>'\"\n #,?<.@%abc01\t", max_size=80)
    )
)
def test_arbitrary_yaml_text(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "monitor.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(str(path))
    except ConfigError:
        pass
