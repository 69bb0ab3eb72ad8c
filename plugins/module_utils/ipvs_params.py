# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn plain mappings (module options, YAML config) into checked model objects.

Every rule the kernel would enforce, and a few ipvsadm enforces, is checked
here before any netlink message is sent.  Errors name the field and the rule:
``services[2].real_servers[0].weight: must be an integer from 0 to 65535``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from .ipvs_model import (
    DEFAULT_SCHEDULER,
    FAMILIES,
    FORWARDING_METHODS,
    IPV4,
    IPV6,
    MAX_FWMARK,
    MAX_PERSISTENCE_TIMEOUT,
    MAX_THRESHOLD,
    MAX_WEIGHT,
    PERSISTENCE_ENGINES,
    PROTOCOLS,
    SCHEDULER_FLAGS,
    SCHEDULERS,
    TUNNEL_CHECKSUMS,
    TUNNEL_TYPES,
    RealServer,
    Service,
    ServiceKey,
    family_of,
    netmask_to_prefix,
    parse_address,
)

SERVICE_FIELDS = (
    "protocol",
    "address",
    "port",
    "fwmark",
    "family",
    "scheduler",
    "scheduler_flags",
    "one_packet",
    "persistence_timeout",
    "persistence_netmask",
    "persistence_prefix_length",
    "persistence_engine",
)
SERVICE_KEY_FIELDS = ("protocol", "address", "port", "fwmark", "family")
REAL_SERVER_FIELDS = (
    "address",
    "port",
    "forwarding",
    "weight",
    "upper_threshold",
    "lower_threshold",
    "tunnel_type",
    "tunnel_port",
    "tunnel_checksum",
)


class ValidationError(ValueError):
    """Bad input: names the field (a path) and the rule it broke."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__("%s: %s" % (field, rule))


def _path(prefix: str, name: str) -> str:
    return "%s.%s" % (prefix, name) if prefix else name


def _integer(
    params: Mapping[str, Any], name: str, prefix: str, low: int, high: int
) -> Optional[int]:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        text = value.strip() if isinstance(value, str) else ""
        # isdecimal() alone accepts other scripts' digits, which int() may refuse.
        if text.isascii() and text.isdecimal() and len(text) <= 20:
            value = int(text)
        else:
            raise ValidationError(
                _path(prefix, name), "must be an integer from %d to %d" % (low, high)
            )
    if not low <= value <= high:
        shown = "%d" % value if value.bit_length() <= 64 else "a %d-bit number" % value.bit_length()
        raise ValidationError(
            _path(prefix, name), "must be an integer from %d to %d, got %s" % (low, high, shown)
        )
    return int(value)


def _choice(
    params: Mapping[str, Any], name: str, prefix: str, choices: Tuple[str, ...]
) -> Optional[str]:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(
            _path(prefix, name), "must be one of %s, got %r" % (", ".join(choices), value)
        )
    return value


def _boolean(params: Mapping[str, Any], name: str, prefix: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(_path(prefix, name), "must be true or false, got %r" % (value,))
    return value


def _address(params: Mapping[str, Any], name: str, prefix: str) -> Optional[str]:
    value = params.get(name)
    if value is None:
        return None
    try:
        address, _family, unicast = parse_address(str(value).strip())
    except ValueError:
        raise ValidationError(
            _path(prefix, name), "must be an IPv4 or IPv6 address, got %r" % (value,)
        ) from None
    if not unicast:
        raise ValidationError(_path(prefix, name), "must be a unicast address, got %s" % address)
    return address


def check_unknown(params: Mapping[str, Any], allowed: Tuple[str, ...], prefix: str) -> None:
    """Reject keys we do not know (a typo must not be silently ignored)."""
    for name in params:
        if name not in allowed:
            raise ValidationError(
                _path(prefix, str(name)), "unknown option; allowed: %s" % ", ".join(allowed)
            )


def parse_service_key(params: Mapping[str, Any], prefix: str = "") -> ServiceKey:
    """The key of a virtual service: protocol+address+port, or fwmark (+family)."""
    fwmark = _integer(params, "fwmark", prefix, 1, MAX_FWMARK)
    family = _choice(params, "family", prefix, FAMILIES)
    if fwmark is not None:
        for name in ("address", "port", "protocol"):
            if params.get(name) is not None:
                raise ValidationError(
                    _path(prefix, name),
                    "cannot be combined with fwmark (a fwmark service is keyed by mark and family)",
                )
        return ServiceKey.for_fwmark(fwmark, family or IPV4)
    address = _address(params, "address", prefix)
    if address is None:
        raise ValidationError(_path(prefix, "address"), "is required unless fwmark is given")
    if family is not None and family != family_of(address):
        raise ValidationError(
            _path(prefix, "family"),
            "is %s but address %s is %s" % (family, address, family_of(address)),
        )
    port = _integer(params, "port", prefix, 0, 65535)
    if port is None:
        raise ValidationError(_path(prefix, "port"), "is required for a service keyed by address")
    protocol = _choice(params, "protocol", prefix, PROTOCOLS) or "tcp"
    return ServiceKey.for_address(protocol, address, port)


def parse_service(params: Mapping[str, Any], prefix: str = "") -> Service:
    """A full virtual service definition, checked as the kernel would."""
    key = parse_service_key(params, prefix)
    scheduler = _choice(params, "scheduler", prefix, SCHEDULERS) or DEFAULT_SCHEDULER
    flags = _scheduler_flags(params, prefix, scheduler)
    one_packet = _boolean(params, "one_packet", prefix)
    if one_packet and key.protocol not in ("udp", ""):
        raise ValidationError(
            _path(prefix, "one_packet"), "only applies to UDP and fwmark services"
        )
    timeout = _integer(params, "persistence_timeout", prefix, 1, MAX_PERSISTENCE_TIMEOUT)
    prefix_length = _persistence_prefix(params, prefix, key)
    if prefix_length is not None and timeout is None:
        raise ValidationError(
            _path(
                prefix, "persistence_netmask" if key.family == IPV4 else "persistence_prefix_length"
            ),
            "needs persistence_timeout (it sets the granularity of persistence)",
        )
    engine = _choice(params, "persistence_engine", prefix, PERSISTENCE_ENGINES)
    if engine is not None:
        if timeout is None:
            raise ValidationError(
                _path(prefix, "persistence_engine"),
                "needs a persistent service (persistence_timeout)",
            )
        if key.protocol != "udp":
            raise ValidationError(
                _path(prefix, "persistence_engine"), "sip works on UDP services only"
            )
    if key.port == 0 and not key.is_fwmark and timeout is None:
        raise ValidationError(
            _path(prefix, "port"), "0 (all ports) is only allowed for a persistent service"
        )
    return Service(
        key=key,
        scheduler=scheduler,
        scheduler_flags=flags,
        one_packet=one_packet,
        persistence_timeout=timeout,
        persistence_prefix=prefix_length,
        persistence_engine=engine,
    )


def _scheduler_flags(params: Mapping[str, Any], prefix: str, scheduler: str) -> Tuple[str, ...]:
    value = params.get("scheduler_flags")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(_path(prefix, "scheduler_flags"), "must be a list")
    flags = []
    for flag in value:
        if flag not in SCHEDULER_FLAGS:
            raise ValidationError(
                _path(prefix, "scheduler_flags"),
                "unknown flag %r; known: %s" % (flag, ", ".join(SCHEDULER_FLAGS)),
            )
        if not str(flag).startswith(scheduler + "-"):
            raise ValidationError(
                _path(prefix, "scheduler_flags"),
                "%s needs scheduler %s, not %s" % (flag, flag.split("-")[0], scheduler),
            )
        if flag not in flags:
            flags.append(flag)
    return tuple(sorted(flags, key=SCHEDULER_FLAGS.index))


def _persistence_prefix(params: Mapping[str, Any], prefix: str, key: ServiceKey) -> Optional[int]:
    netmask = params.get("persistence_netmask")
    prefix_length = params.get("persistence_prefix_length")
    if key.family == IPV6:
        if netmask is not None:
            raise ValidationError(
                _path(prefix, "persistence_netmask"),
                "is for IPv4 services; use persistence_prefix_length on IPv6",
            )
        return _integer(params, "persistence_prefix_length", prefix, 1, 128)
    if prefix_length is not None:
        raise ValidationError(
            _path(prefix, "persistence_prefix_length"),
            "is for IPv6 services; use persistence_netmask on IPv4",
        )
    if netmask is None:
        return None
    try:
        return netmask_to_prefix(str(netmask))
    except ValueError:
        raise ValidationError(
            _path(prefix, "persistence_netmask"),
            "must be a contiguous IPv4 netmask such as 255.255.255.0, got %r" % (netmask,),
        ) from None


def parse_real_server(
    params: Mapping[str, Any], service: ServiceKey, prefix: str = ""
) -> RealServer:
    """A real server of `service`, checked as the kernel (and ipvsadm) would."""
    address = _address(params, "address", prefix)
    if address is None:
        raise ValidationError(_path(prefix, "address"), "is required")
    forwarding = _choice(params, "forwarding", prefix, FORWARDING_METHODS) or "route"
    family = family_of(address)
    if family != service.family and forwarding != "tunnel":
        raise ValidationError(
            _path(prefix, "address"),
            "%s real server on an %s service: the kernel allows mixed families only with forwarding tunnel"
            % (family, service.family),
        )
    port = _real_server_port(params, prefix, service, forwarding)
    weight = _integer(params, "weight", prefix, 0, MAX_WEIGHT)
    upper = _integer(params, "upper_threshold", prefix, 0, MAX_THRESHOLD) or 0
    lower = _integer(params, "lower_threshold", prefix, 0, MAX_THRESHOLD) or 0
    if lower > upper:
        rule = "must not be above upper_threshold (%d)" % upper
        if upper == 0:
            rule = "needs an upper_threshold at or above it (0 means no upper threshold)"
        raise ValidationError(_path(prefix, "lower_threshold"), rule)
    tunnel_type, tunnel_port, checksum = _tunnel(params, prefix, forwarding)
    return RealServer(
        address=address,
        port=port,
        forwarding=forwarding,
        weight=1 if weight is None else weight,
        upper_threshold=upper,
        lower_threshold=lower,
        tunnel_type=tunnel_type,
        tunnel_port=tunnel_port,
        tunnel_checksum=checksum,
    )


def _real_server_port(
    params: Mapping[str, Any], prefix: str, service: ServiceKey, forwarding: str
) -> int:
    # Port 0 means "the port the client asked for": only for fwmark and all-port services.
    port_zero_allowed = service.is_fwmark or service.port == 0
    port = _integer(params, "port", prefix, 0 if port_zero_allowed else 1, 65535)
    if port is None:
        return service.port
    if forwarding in ("route", "tunnel") and not port_zero_allowed and port != service.port:
        raise ValidationError(
            _path(prefix, "port"),
            "must equal the service port (%d) with forwarding %s: only masq can map ports"
            % (service.port, forwarding),
        )
    return port


def _tunnel(params: Mapping[str, Any], prefix: str, forwarding: str) -> Tuple[str, int, str]:
    names = ("tunnel_type", "tunnel_port", "tunnel_checksum")
    if forwarding != "tunnel":
        for name in names:
            if params.get(name) is not None:
                raise ValidationError(_path(prefix, name), "only applies with forwarding tunnel")
        return "ipip", 0, "none"
    tunnel_type = _choice(params, "tunnel_type", prefix, TUNNEL_TYPES) or "ipip"
    tunnel_port = _integer(params, "tunnel_port", prefix, 1, 65535)
    checksum = _choice(params, "tunnel_checksum", prefix, TUNNEL_CHECKSUMS) or "none"
    if tunnel_type == "gue" and tunnel_port is None:
        raise ValidationError(_path(prefix, "tunnel_port"), "is required with tunnel_type gue")
    if tunnel_type != "gue" and tunnel_port is not None:
        raise ValidationError(_path(prefix, "tunnel_port"), "only applies to tunnel_type gue")
    if tunnel_type == "ipip" and checksum != "none":
        raise ValidationError(_path(prefix, "tunnel_checksum"), "needs tunnel_type gue or gre")
    if checksum == "remcsum" and tunnel_type != "gue":
        raise ValidationError(_path(prefix, "tunnel_checksum"), "remcsum needs tunnel_type gue")
    return tunnel_type, tunnel_port or 0, checksum
