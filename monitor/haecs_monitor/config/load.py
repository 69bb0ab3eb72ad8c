"""Load and validate the monitor's configuration (docs/design/monitor-config.md).

`load_config(path)` and `parse_config(data)` return a frozen `MonitorConfig`
or raise `ConfigError` listing every problem with its path, for instance
``services[2].real_servers[0].checks[1].timeout: must be greater than 0``.
Nothing else is ever raised, whatever the input.  Services and real servers
are validated by the engine's own `ipvs.params`, so the monitor accepts
exactly what the Ansible modules accept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Callable, Optional, TypeVar

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs import params as ipvs_params
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.model import RealServer, ServiceKey
from haecs_monitor.config.checks import (
    CheckTemplate,
    parse_check,
    parse_check_defaults,
    resolve_check,
)
from haecs_monitor.config.model import (
    CheckKey,
    CheckSpec,
    CheckTiming,
    ConfigError,
    GlobalSettings,
    ListenConfig,
    MonitorConfig,
    NotifyConfig,
    QuorumConfig,
    RealServerConfig,
    ServiceConfig,
)
from haecs_monitor.config.reader import Problems, Reader, as_list, as_mapping, item, shown
from haecs_monitor.config.sections import Digest, SectionMemory, data_digest, digest_of_bytes
from haecs_monitor.config.yamlfile import YAMLProblem, load_yaml
from haecs_monitor.config.yamlsections import (
    Sections,
    SectionSource,
    Unsplittable,
    split_services,
)

__all__ = [
    "CheckKey",
    "CheckSpec",
    "CheckTiming",
    "ConfigError",
    "GlobalSettings",
    "ListenConfig",
    "MonitorConfig",
    "NotifyConfig",
    "QuorumConfig",
    "RealServerConfig",
    "ServiceConfig",
    "load_config",
    "parse_config",
]

TOP_KEYS = ("global", "services", "static_services")
GLOBAL_KEYS = (
    "name",
    "control_socket",
    "listen",
    "state_file",
    "reconcile_interval",
    "drain_timeout",
    "log_format",
    "notify",
    "script_user",
    "on_exit",
    "check_defaults",
)
MONITOR_SERVICE_KEYS = (
    "on_failure",
    "slow_start",
    "quorum",
    "sorry_servers",
    "check_defaults",
    "checks",
    "real_servers",
)
SERVICE_KEYS = ipvs_params.SERVICE_FIELDS + MONITOR_SERVICE_KEYS
REAL_SERVER_KEYS = (*ipvs_params.REAL_SERVER_FIELDS, "checks", "check_defaults")
ON_FAILURE = ("remove", "inhibit")
ON_EXIT = ("keep", "remove")
LOG_FORMATS = ("json", "text")
MAX_FILE_BYTES = 64 * 1024 * 1024

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


def load_config(path: str, memory: Optional[SectionMemory] = None) -> MonitorConfig:
    """Read and validate the YAML file at `path`.

    With `memory` (what the last load of this file made), an unchanged file
    returns the very same configuration object, and unchanged service
    sections are not read again (sections.py).
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(["%s: cannot read: %s" % (path, error.strerror or error)]) from None
    except (ValueError, TypeError) as error:  # e.g. a NUL in the path
        raise ConfigError(["%s: cannot read: %s" % (shown(path), error)]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(["%s: larger than %d bytes" % (path, MAX_FILE_BYTES)])
    # Of the bytes, before any decoding: the hash lets other threads run
    # (the daemon's event loop), and an unchanged file is never decoded.
    file_digest = digest_of_bytes(raw)
    if memory is not None and memory.config is not None and memory.file_digest == file_digest:
        return memory.config
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(["%s: not UTF-8 text (byte %d)" % (path, error.start)]) from None
    if memory is not None:
        sections = split_services(text)
        if sections is not None:
            try:
                return _parse_sections(sections, path, memory, file_digest)
            except Unsplittable:
                memory.failed()  # read the whole file instead: its errors name the lines
    try:
        data = load_yaml(text, path)
    except YAMLProblem as error:
        if memory is not None:
            memory.failed()
        raise ConfigError([str(error)]) from None
    return parse_config(data, memory, file_digest)


def parse_config(
    data: object, memory: Optional[SectionMemory] = None, file_digest: Optional[Digest] = None
) -> MonitorConfig:
    """Validate already-parsed data (a mapping with `global` and `services`)."""
    return _validated(lambda problems: _parse(data, problems, memory), memory, file_digest)


def _validated(
    parse: Callable[[Problems], Optional[MonitorConfig]],
    memory: Optional[SectionMemory],
    file_digest: Optional[Digest],
) -> MonitorConfig:
    problems = Problems()
    try:
        config = parse(problems)
    except RecursionError:
        problems.add("", "the configuration is nested too deeply")
        config = None
    if problems or config is None:
        if memory is not None:
            memory.failed()
        raise ConfigError(problems.messages or ["the configuration is invalid"])
    if memory is not None:
        memory.loaded(file_digest, config)
    return config


def _parse_sections(
    sections: Sections, path: str, memory: SectionMemory, file_digest: Digest
) -> MonitorConfig:
    """A YAML file cut into its service sections: only new sections are parsed."""
    try:
        head = load_yaml(sections.head, path)
    except YAMLProblem:
        raise Unsplittable() from None

    def parse(problems: Problems) -> Optional[MonitorConfig]:
        return _parse(head, problems, memory, sections.services)

    return _validated(parse, memory, file_digest)


def _data_sections(raw: object) -> Optional[list[SectionSource]]:
    if not isinstance(raw, list):
        return None
    return [(data_digest(entry), functools.partial(_same, entry)) for entry in raw]


def _same(value: object) -> object:
    return value


def _parse(
    data: object,
    problems: Problems,
    memory: Optional[SectionMemory] = None,
    text_sections: Optional[list[SectionSource]] = None,
) -> Optional[MonitorConfig]:
    if data is None:
        problems.add("", "the configuration is empty: expected a mapping with global and services")
        return None
    top = as_mapping(data, "(top level)", problems, "a mapping with global and services")
    if top is None:
        return None
    Reader(top, "", problems).reject_unknown(TOP_KEYS)
    settings, defaults_ok = _global(top.get("global"), problems)
    if memory is None:
        services = _services(top.get("services"), settings, defaults_ok, problems)
    else:
        sources = (
            text_sections if text_sections is not None else _data_sections(top.get("services"))
        )
        if sources is None:  # not a list: _services says what is wrong
            services = _services(top.get("services"), settings, defaults_ok, problems)
        else:
            context = data_digest(top.get("global"))
            services = _remembered_services(
                sources, text_sections is not None, memory, context, settings, defaults_ok, problems
            )
    static = _static_services(top.get("static_services"), services, problems)
    return MonitorConfig(settings, tuple(services), static)


# ---------------------------------------------------------------- global


def _global(raw: object, problems: Problems) -> tuple[GlobalSettings, bool]:
    """The settings, and whether their check_defaults are consistent."""
    if raw is None:
        return GlobalSettings(), True
    data = as_mapping(raw, "global", problems)
    if data is None:
        return GlobalSettings(), True
    reader = Reader(data, "global", problems)
    reader.reject_unknown(GLOBAL_KEYS)
    name = (
        reader.text("name", _NAME, "must be letters, digits, '_', '.' or '-' (at most 64)")
        or "default"
    )
    check_defaults, defaults_ok = parse_check_defaults(
        data.get("check_defaults"), "global.check_defaults", CheckTiming(), True, problems
    )
    reconcile = reader.number("reconcile_interval", 0.0, 86400.0, above_low=True)
    drain_timeout = reader.number("drain_timeout", 0.0, 86400.0)
    settings = GlobalSettings(
        name=name,
        control_socket=reader.path_option("control_socket") or "/run/haecs/monitor-%s.sock" % name,
        listen=_listen(reader),
        state_file=reader.path_option("state_file") or "/var/lib/haecs/monitor-%s.state" % name,
        reconcile_interval=5.0 if reconcile is None else reconcile,
        drain_timeout=60.0 if drain_timeout is None else drain_timeout,
        log_format=reader.choice("log_format", LOG_FORMATS) or "json",
        notify=_notify(reader),
        script_user=reader.text("script_user", _USER, "must be a user name") or "nobody",
        on_exit=reader.choice("on_exit", ON_EXIT) or "keep",
        check_defaults=check_defaults,
    )
    return settings, defaults_ok


def _listen(parent: Reader) -> Optional[ListenConfig]:
    data = parent.mapping("listen")
    if data is None:
        return None
    reader = Reader(data, parent.at("listen"), parent.problems)
    reader.reject_unknown(("address", "port", "token_file", "tls_cert", "tls_key"))
    required = [reader.require(name) for name in ("address", "port", "token_file")]
    address = reader.address("address", allow_unspecified=True)
    port = reader.integer("port", 1, 65535)
    token_file = reader.path_option("token_file")
    tls_cert = reader.path_option("tls_cert")
    tls_key = reader.path_option("tls_key")
    for given, missing in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
        if reader.has(given) and not reader.has(missing):
            reader.fail(missing, "is required when %s is given (TLS needs both)" % given)
    if not all(required) or address is None or port is None or token_file is None:
        return None
    return ListenConfig(address, port, token_file, tls_cert, tls_key)


def _notify(parent: Reader) -> Optional[NotifyConfig]:
    data = parent.mapping("notify")
    if data is None:
        return None
    reader = Reader(data, parent.at("notify"), parent.problems)
    reader.reject_unknown(("command", "timeout"))
    reader.require("command")
    command = reader.command("command")
    timeout = reader.number("timeout", 0.0, 3600.0, above_low=True)
    if command is None:
        return None
    return NotifyConfig(command, 10.0 if timeout is None else timeout)


# ---------------------------------------------------------------- services


def _services(
    raw: object, settings: GlobalSettings, defaults_ok: bool, problems: Problems
) -> list[ServiceConfig]:
    if raw is None:
        return []
    entries = as_list(raw, "services", problems)
    if entries is None:
        return []
    return _unique(
        (
            (
                item("services", index),
                _service(entry, item("services", index), settings, defaults_ok, problems),
            )
            for index, entry in enumerate(entries)
        ),
        problems,
    )


def _unique(
    found: Iterable[tuple[str, Optional[ServiceConfig]]], problems: Problems
) -> list[ServiceConfig]:
    """The services in order, each key once: a later one with the same key is
    reported as a duplicate (parsed lazily, so problems stay in file order)."""
    services: list[ServiceConfig] = []
    seen: dict[ServiceKey, str] = {}
    for path, service in found:
        if service is None:
            continue
        if service.key in seen:
            problems.add(path, "duplicate of %s (%s)" % (seen[service.key], service.key))
            continue
        seen[service.key] = path
        services.append(service)
    return services


def _remembered_services(
    sources: list[SectionSource],
    by_text: bool,
    memory: SectionMemory,
    context: Digest,
    settings: GlobalSettings,
    defaults_ok: bool,
    problems: Problems,
) -> list[ServiceConfig]:
    """As `_services`, taking each unchanged section's service from `memory`.

    A section read anew (the file switched between YAML and JSON, say) that
    validates to a service equal to the last load's is that same object, so
    the daemon sees by identity that it did not change: otherwise a switch
    of format rebuilds all of its health state in the event loop.

    A section `by_text` (YAML, digested as written) that must be read is
    also remembered by the digest of its data, as JSON sections are: the
    same services written again in the other format or another layout are
    parsed but not validated again (at 30,000 real servers the validation
    was most of a switch).  Another key order still costs a validation."""
    last: Optional[dict[ServiceKey, ServiceConfig]] = None

    def each() -> Iterator[tuple[str, Optional[ServiceConfig]]]:
        nonlocal last
        for index, (digest, entry) in enumerate(sources):
            path = item("services", index)
            service = memory.recall(digest, context)
            if service is None:
                data = entry()
                by_data = data_digest(data) if by_text else None
                if by_data is not None:
                    service = memory.recall(by_data, context)
                    if service is not None:
                        memory.remember(digest, context, service, by_data)
                        yield path, service
                        continue
                found = problems.found
                service = _service(data, path, settings, defaults_ok, problems)
                if service is not None and problems.found == found:
                    if last is None:
                        config = memory.config
                        last = {} if config is None else {s.key: s for s in config.services}
                    same = last.get(service.key)
                    if same is not None and same == service:
                        service = same
                    memory.remember(digest, context, service, by_data)
            yield path, service

    return _unique(each(), problems)


def _engine_call(
    problems: Problems, path: str, call: Callable[..., T], *args: object
) -> Optional[T]:
    """Run an ipvs_params validator; its error becomes a problem."""
    try:
        return call(*args)
    except ipvs_params.ValidationError as error:
        problems.add("", str(error))
    except (ValueError, TypeError, OverflowError, AttributeError) as error:
        problems.add(path, "invalid value: %s" % error)
    return None


def _service(
    raw: object, path: str, settings: GlobalSettings, global_ok: bool, problems: Problems
) -> Optional[ServiceConfig]:
    data = as_mapping(raw, path, problems)
    if data is None:
        return None
    reader = Reader(data, path, problems)
    reader.reject_unknown(SERVICE_KEYS, "a service")
    engine_options = {name: data[name] for name in ipvs_params.SERVICE_FIELDS if name in data}
    service = _engine_call(problems, path, ipvs_params.parse_service, engine_options, path)

    on_failure = reader.choice("on_failure", ON_FAILURE) or "remove"
    slow_start = reader.number("slow_start", 0.0, 86400.0) or 0.0
    quorum = _quorum(reader)
    defaults, defaults_ok = parse_check_defaults(
        data.get("check_defaults"),
        reader.at("check_defaults"),
        settings.check_defaults,
        global_ok,
        problems,
    )
    templates = _templates(reader, settings, problems)
    key = service.key if service is not None else None
    real_servers = _real_servers(reader, key, templates, defaults, defaults_ok, settings, problems)
    sorry = _sorry_servers(reader, key, {rs.key for rs in real_servers}, problems)
    if service is None:
        return None
    return ServiceConfig(
        service=service,
        real_servers=tuple(real_servers),
        on_failure=on_failure,
        slow_start=slow_start,
        quorum=quorum,
        sorry_servers=tuple(sorry),
    )


def _static_services(
    raw: object, services: list[ServiceConfig], problems: Problems
) -> frozenset[ServiceKey]:
    """The keys of services another owner programs (the director role's
    ipvs_table): a reload that drops one of them hands it over as it is."""
    if raw is None:
        return frozenset()
    entries = as_list(raw, "static_services", problems)
    if entries is None:
        return frozenset()
    monitored = {service.key for service in services}
    keys: set[ServiceKey] = set()
    for index, entry in enumerate(entries):
        path = item("static_services", index)
        data = as_mapping(
            entry, path, problems, "a service key (protocol, address, port or fwmark)"
        )
        if data is None:
            continue
        Reader(data, path, problems).reject_unknown(ipvs_params.SERVICE_KEY_FIELDS, "a service key")
        key = _engine_call(problems, path, ipvs_params.parse_service_key, data, path)
        if key is None:
            continue
        if key in monitored:
            problems.add(path, "%s is also in services: a service is monitored or static" % key)
        keys.add(key)
    return frozenset(keys)


def _quorum(parent: Reader) -> Optional[QuorumConfig]:
    data = parent.mapping("quorum")
    if data is None:
        return None
    reader = Reader(data, parent.at("quorum"), parent.problems)
    reader.reject_unknown(("min_healthy_weight", "min_healthy_fraction", "hysteresis"))
    weight = reader.integer("min_healthy_weight", 0, 2**40)
    fraction = reader.number("min_healthy_fraction", 0.0, 1.0)
    hysteresis = reader.integer("hysteresis", 0, 2**40)
    if not reader.has("min_healthy_weight") and not reader.has("min_healthy_fraction"):
        parent.fail("quorum", "needs min_healthy_weight or min_healthy_fraction")
        return None
    return QuorumConfig(weight, fraction, hysteresis or 0)


def _templates(
    reader: Reader, settings: GlobalSettings, problems: Problems
) -> Optional[list[CheckTemplate]]:
    """The checks written in `reader` (None when the key is absent)."""
    if reader.data.get("checks") is None:
        return None
    templates: list[CheckTemplate] = []
    for index, raw in enumerate(reader.items("checks")):
        template = parse_check(
            raw, item(reader.at("checks"), index), settings.script_user, problems
        )
        if template is not None:
            templates.append(template)
    return templates


def _real_servers(
    parent: Reader,
    service: Optional[ServiceKey],
    service_checks: Optional[list[CheckTemplate]],
    defaults: CheckTiming,
    defaults_ok: bool,
    settings: GlobalSettings,
    problems: Problems,
) -> list[RealServerConfig]:
    servers: list[RealServerConfig] = []
    seen: dict[tuple[str, int], str] = {}
    for index, raw in enumerate(parent.items("real_servers")):
        path = item(parent.at("real_servers"), index)
        data = as_mapping(raw, path, problems)
        if data is None:
            continue
        reader = Reader(data, path, problems)
        reader.reject_unknown(REAL_SERVER_KEYS, "a real server")
        server = _engine_server(data, service, path, problems)
        own_defaults, own_ok = parse_check_defaults(
            data.get("check_defaults"), reader.at("check_defaults"), defaults, defaults_ok, problems
        )
        own_checks = _templates(reader, settings, problems)
        templates = own_checks if own_checks is not None else service_checks or []
        if server is None:
            continue
        checks = [resolve_check(t, own_defaults, own_ok, server.key, problems) for t in templates]
        if server.key in seen:
            problems.add(
                path,
                "duplicate of %s (%s port %d)" % (seen[server.key], server.address, server.port),
            )
            continue
        seen[server.key] = path
        servers.append(
            RealServerConfig(server, tuple(check for check in checks if check is not None))
        )
    return servers


def _engine_server(
    data: dict[str, object], service: Optional[ServiceKey], path: str, problems: Problems
) -> Optional[RealServer]:
    if service is None:  # the service itself is wrong: its servers cannot be checked
        return None
    options = {name: data[name] for name in ipvs_params.REAL_SERVER_FIELDS if name in data}
    return _engine_call(problems, path, ipvs_params.parse_real_server, options, service, path)


def _sorry_servers(
    parent: Reader, service: Optional[ServiceKey], taken: set[tuple[str, int]], problems: Problems
) -> list[RealServer]:
    servers: list[RealServer] = []
    seen: dict[tuple[str, int], str] = {}
    for index, raw in enumerate(parent.items("sorry_servers")):
        path = item(parent.at("sorry_servers"), index)
        data = as_mapping(raw, path, problems)
        if data is None:
            continue
        Reader(data, path, problems).reject_unknown(
            ipvs_params.REAL_SERVER_FIELDS, "a sorry server"
        )
        server = _engine_server(data, service, path, problems)
        if server is None:
            continue
        if server.key in taken:
            problems.add(path, "is also a real server of this service (%s port %d)" % server.key)
            continue
        if server.key in seen:
            problems.add(
                path,
                "duplicate of %s (%s port %d)" % (seen[server.key], server.address, server.port),
            )
            continue
        seen[server.key] = path
        servers.append(server)
    return servers
