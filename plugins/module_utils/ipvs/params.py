# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn plain mappings (module options, YAML config) into checked model objects.

Every rule the kernel would enforce, and a few ipvsadm enforces, is checked
here before any netlink message is sent.  Errors name the field and the rule:
``services[2].real_servers[0].weight: must be an integer from 0 to 65535``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping, Optional, Tuple

from .errors import HaecsError
from .model import (
    DEFAULT_SCHEDULER,
    FAMILIES,
    FORWARDING_LOCAL,
    FORWARDING_METHODS,
    IPV4,
    IPV6,
    MAX_FWMARK,
    MAX_PERSISTENCE_TIMEOUT,
    MAX_THRESHOLD,
    MAX_WEIGHT,
    PERSISTENCE_ENGINES,
    PROTOCOLS,
    REAL_SERVER_SETTINGS,
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
REAL_SERVER_FIELDS = REAL_SERVER_SETTINGS


# persistence_engine: none removes the engine (omitting it keeps the current one).
NO_PERSISTENCE_ENGINE = "none"
PERSISTENCE_ENGINE_CHOICES = (*PERSISTENCE_ENGINES, NO_PERSISTENCE_ENGINE)


class ValidationError(HaecsError, ValueError):
    """Bad input: names the field (a path) and the rule it broke."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.option = field
        self.rule = rule
        super().__init__("%s: %s" % (field, rule))


def field_path(prefix: str, name: str) -> str:
    """The path of option `name` under `prefix` (``services[0].port``), as errors name it."""
    return "%s.%s" % (prefix, name) if prefix else name


def integer_value(value: Any) -> Optional[int]:
    """What counts as an integer, for module options and the monitor's
    configuration alike: an int, or a string of ASCII digits (YAML and
    templates give "80"); None for anything else, booleans included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    # isdecimal() alone accepts other scripts' digits, which int() may refuse.
    if text.isascii() and text.isdecimal() and len(text) <= 20:
        return int(text)
    return None


def _integer(
    params: Mapping[str, Any], name: str, prefix: str, low: int, high: int
) -> Optional[int]:
    raw = params.get(name)
    if raw is None:
        return None
    value = integer_value(raw)
    if value is None:
        raise ValidationError(
            field_path(prefix, name), "must be an integer from %d to %d" % (low, high)
        )
    if not low <= value <= high:
        shown = "%d" % value if value.bit_length() <= 64 else "a %d-bit number" % value.bit_length()
        raise ValidationError(
            field_path(prefix, name),
            "must be an integer from %d to %d, got %s" % (low, high, shown),
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
            field_path(prefix, name), "must be one of %s, got %r" % (", ".join(choices), value)
        )
    # The constant, not the caller's equal copy: a configuration of 30,000
    # real servers holds one string instead of one per server.
    return choices[choices.index(value)]


def _optional_boolean(params: Mapping[str, Any], name: str, prefix: str) -> Optional[bool]:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValidationError(field_path(prefix, name), "must be true or false, got %r" % (value,))
    return value


def _address(params: Mapping[str, Any], name: str, prefix: str) -> Optional[str]:
    value = params.get(name)
    if value is None:
        return None
    if "%" in str(value):
        raise ValidationError(
            field_path(prefix, name),
            "must be an address without a zone index (IPVS has no zones), got %r" % (value,),
        )
    try:
        address, _family, unicast = parse_address(str(value).strip())
    except ValueError:
        raise ValidationError(
            field_path(prefix, name), "must be an IPv4 or IPv6 address, got %r" % (value,)
        ) from None
    if not unicast:
        raise ValidationError(
            field_path(prefix, name), "must be a unicast address, got %s" % address
        )
    return address


def check_unknown(params: Mapping[str, Any], allowed: Tuple[str, ...], prefix: str) -> None:
    """Reject keys we do not know (a typo must not be silently ignored)."""
    for name in params:
        if name not in allowed:
            raise ValidationError(
                field_path(prefix, str(name)), "unknown option; allowed: %s" % ", ".join(allowed)
            )


def parse_service_key(params: Mapping[str, Any], prefix: str = "") -> ServiceKey:
    """The key of a virtual service: protocol+address+port, or fwmark (+family)."""
    fwmark = _integer(params, "fwmark", prefix, 1, MAX_FWMARK)
    family = _choice(params, "family", prefix, FAMILIES)
    if fwmark is not None:
        for name in ("address", "port", "protocol"):
            if params.get(name) is not None:
                raise ValidationError(
                    field_path(prefix, name),
                    "cannot be combined with fwmark (a fwmark service is keyed by mark and family)",
                )
        return ServiceKey.for_fwmark(fwmark, family or IPV4)
    address = _address(params, "address", prefix)
    if address is None:
        raise ValidationError(field_path(prefix, "address"), "is required unless fwmark is given")
    if family is not None and family != family_of(address):
        raise ValidationError(
            field_path(prefix, "family"),
            "is %s but address %s is %s" % (family, address, family_of(address)),
        )
    port = _integer(params, "port", prefix, 0, 65535)
    if port is None:
        raise ValidationError(
            field_path(prefix, "port"), "is required for a service keyed by address"
        )
    protocol = _choice(params, "protocol", prefix, PROTOCOLS) or "tcp"
    return ServiceKey.for_address(protocol, address, port)


def _check_engine(key: ServiceKey, persistent: bool, prefix: str) -> None:
    """A persistence engine (sip) needs a persistent UDP service."""
    if not persistent:
        raise ValidationError(
            field_path(prefix, "persistence_engine"),
            "needs a persistent service (persistence_timeout)",
        )
    if key.protocol != "udp":
        raise ValidationError(
            field_path(prefix, "persistence_engine"), "sip works on UDP services only"
        )


def check_service(params: Mapping[str, Any], prefix: str = "") -> ServiceKey:
    """The checks of `parse_service` that need no current entry (run before
    the table is read); returns the key.  Rules that depend on an omitted
    option's current value are left to `parse_service`.
    """
    key = parse_service_key(params, prefix)
    scheduler = _choice(params, "scheduler", prefix, SCHEDULERS)
    if params.get("scheduler_flags") is not None:
        _scheduler_flags(params, prefix, scheduler)
    if _optional_boolean(params, "one_packet", prefix) and key.protocol not in ("udp", ""):
        raise ValidationError(
            field_path(prefix, "one_packet"), "only applies to UDP and fwmark services"
        )
    timeout = _integer(params, "persistence_timeout", prefix, 0, MAX_PERSISTENCE_TIMEOUT)
    if _persistence_prefix(params, prefix, key) is not None and timeout == 0:
        raise ValidationError(
            field_path(
                prefix, "persistence_netmask" if key.family == IPV4 else "persistence_prefix_length"
            ),
            "needs persistence_timeout (it sets the granularity of persistence)",
        )
    engine = _choice(params, "persistence_engine", prefix, PERSISTENCE_ENGINE_CHOICES)
    if engine is not None and engine != NO_PERSISTENCE_ENGINE:
        _check_engine(key, persistent=timeout != 0, prefix=prefix)
    if key.port == 0 and not key.is_fwmark and timeout == 0:
        raise ValidationError(
            field_path(prefix, "persistence_timeout"),
            "0 (all ports) is only allowed for a persistent service",
        )
    return key


def parse_service(
    params: Mapping[str, Any], prefix: str = "", existing: Optional[Service] = None
) -> Service:
    """A virtual service, checked as the kernel would.

    `existing`: the service as it is now.  An omitted option then keeps its
    current value (a default applies only to a service being created, or
    when `existing` is None: "exactly as declared").
    """
    key = parse_service_key(params, prefix)
    if existing is not None and existing.key != key:
        raise ValueError("existing service %s is not %s" % (existing.key, key))
    given_scheduler = _choice(params, "scheduler", prefix, SCHEDULERS)
    scheduler = given_scheduler or (existing.scheduler if existing else DEFAULT_SCHEDULER)
    if params.get("scheduler_flags") is not None:
        flags = _scheduler_flags(params, prefix, scheduler)
    elif existing is not None and existing.scheduler == scheduler:
        flags = existing.scheduler_flags
    else:
        # The flags of another scheduler mean nothing to this one: dropped.
        flags = ()
    given_one_packet = _optional_boolean(params, "one_packet", prefix)
    one_packet = (
        given_one_packet
        if given_one_packet is not None
        else (existing.one_packet if existing else False)
    )
    if one_packet and key.protocol not in ("udp", ""):
        raise ValidationError(
            field_path(prefix, "one_packet"), "only applies to UDP and fwmark services"
        )
    given_timeout = _integer(params, "persistence_timeout", prefix, 0, MAX_PERSISTENCE_TIMEOUT)
    if given_timeout is not None:
        # 0 says "not persistent" explicitly (omitted keeps the current persistence).
        timeout = given_timeout or None
    else:
        timeout = existing.persistence_timeout if existing else None
    mask_name = "persistence_netmask" if key.family == IPV4 else "persistence_prefix_length"
    given_prefix = _persistence_prefix(params, prefix, key)
    if given_prefix is not None and timeout is None:
        raise ValidationError(
            field_path(prefix, mask_name),
            "needs persistence_timeout (it sets the granularity of persistence)",
        )
    prefix_length = given_prefix
    if given_prefix is None and existing is not None and timeout is not None:
        prefix_length = existing.persistence_prefix
    given_engine = _choice(params, "persistence_engine", prefix, PERSISTENCE_ENGINE_CHOICES)
    engine: Optional[str] = None
    if given_engine is not None and given_engine != NO_PERSISTENCE_ENGINE:
        engine = given_engine
        _check_engine(key, persistent=timeout is not None, prefix=prefix)
    elif given_engine is None and existing is not None and timeout is not None:
        engine = existing.persistence_engine
    if key.port == 0 and not key.is_fwmark and timeout is None:
        raise ValidationError(
            field_path(prefix, "persistence_timeout" if given_timeout == 0 else "port"),
            "0 (all ports) is only allowed for a persistent service",
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


def _scheduler_flags(
    params: Mapping[str, Any], prefix: str, scheduler: Optional[str]
) -> Tuple[str, ...]:
    value = params.get("scheduler_flags")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(field_path(prefix, "scheduler_flags"), "must be a list")
    flags = []
    for flag in value:
        if flag not in SCHEDULER_FLAGS:
            raise ValidationError(
                field_path(prefix, "scheduler_flags"),
                "unknown flag %r; known: %s" % (flag, ", ".join(SCHEDULER_FLAGS)),
            )
        if scheduler is not None and not str(flag).startswith(scheduler + "-"):
            raise ValidationError(
                field_path(prefix, "scheduler_flags"),
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
                field_path(prefix, "persistence_netmask"),
                "is for IPv4 services; use persistence_prefix_length on IPv6",
            )
        return _integer(params, "persistence_prefix_length", prefix, 1, 128)
    if prefix_length is not None:
        raise ValidationError(
            field_path(prefix, "persistence_prefix_length"),
            "is for IPv6 services; use persistence_netmask on IPv4",
        )
    if netmask is None:
        return None
    try:
        return netmask_to_prefix(str(netmask))
    except ValueError:
        raise ValidationError(
            field_path(prefix, "persistence_netmask"),
            "must be a contiguous IPv4 netmask such as 255.255.255.0, got %r" % (netmask,),
        ) from None


def check_real_server(params: Mapping[str, Any], service: ServiceKey, prefix: str = "") -> None:
    """The checks of `parse_real_server` that need no current entry (run
    before the table is read).  Rules that depend on an omitted option's
    current value (forwarding, the other threshold) are left to
    `parse_real_server`.
    """
    address = _real_server_address(params, prefix)
    port_zero_allowed = service.is_fwmark or service.port == 0
    port = _integer(params, "port", prefix, 0 if port_zero_allowed else 1, 65535)
    forwarding = _choice(params, "forwarding", prefix, FORWARDING_METHODS)
    _integer(params, "weight", prefix, 0, MAX_WEIGHT)
    upper = _integer(params, "upper_threshold", prefix, 0, MAX_THRESHOLD)
    lower = _integer(params, "lower_threshold", prefix, 0, MAX_THRESHOLD)
    if upper is not None and lower is not None:
        _check_thresholds(upper, lower, prefix)
    _choice(params, "tunnel_type", prefix, TUNNEL_TYPES)
    _integer(params, "tunnel_port", prefix, 1, 65535)
    _choice(params, "tunnel_checksum", prefix, TUNNEL_CHECKSUMS)
    if forwarding is None:
        return
    if family_of(address) != service.family and forwarding != "tunnel":
        raise ValidationError(
            field_path(prefix, "address"),
            "%s real server on an %s service: the kernel allows mixed families only with forwarding tunnel"
            % (family_of(address), service.family),
        )
    if (
        forwarding in ("route", "tunnel")
        and not port_zero_allowed
        and port is not None
        and port != service.port
    ):
        raise ValidationError(
            field_path(prefix, "port"),
            "must equal the service port (%d) with forwarding %s: only masq can map ports"
            % (service.port, forwarding),
        )
    if forwarding != "tunnel":
        _tunnel(params, prefix, forwarding)


def parse_real_server(
    params: Mapping[str, Any],
    service: ServiceKey,
    prefix: str = "",
    existing: Optional[Mapping[Tuple[str, int], RealServer]] = None,
) -> RealServer:
    """A real server of `service`, checked as the kernel (and ipvsadm) would.

    `existing`: the service's real servers as they are now.  An omitted
    option then keeps the current value of the server it names (a default
    applies only to a server being added, or when `existing` is None:
    "exactly as declared").  With `existing`, an omitted port names the
    address's only real server of the service, whatever its port.
    """
    address = _real_server_address(params, prefix)
    port_zero_allowed = service.is_fwmark or service.port == 0
    given_port = _integer(params, "port", prefix, 0 if port_zero_allowed else 1, 65535)
    old: Optional[RealServer] = None
    if existing is not None:
        if given_port is None:
            old = _only_server_at(existing, address, prefix)
        else:
            old = existing.get((address, given_port))
    given_forwarding = _choice(params, "forwarding", prefix, FORWARDING_METHODS)
    if given_forwarding is not None:
        forwarding = given_forwarding
    elif old is not None:
        # 'local' is how the kernel reports route/tunnel to a local address.
        forwarding = "route" if old.forwarding == FORWARDING_LOCAL else old.forwarding
    else:
        forwarding = "route"
    family = family_of(address)
    if family != service.family and forwarding != "tunnel":
        raise ValidationError(
            field_path(prefix, "address"),
            "%s real server on an %s service: the kernel allows mixed families only with forwarding tunnel"
            % (family, service.family),
        )
    if given_port is None:
        port = old.port if old is not None else service.port
    else:
        port = given_port
    if forwarding in ("route", "tunnel") and not port_zero_allowed and port != service.port:
        raise ValidationError(
            field_path(prefix, "port"),
            "must equal the service port (%d) with forwarding %s: only masq can map ports"
            % (service.port, forwarding),
        )
    weight = _integer(params, "weight", prefix, 0, MAX_WEIGHT)
    upper = _integer(params, "upper_threshold", prefix, 0, MAX_THRESHOLD)
    lower = _integer(params, "lower_threshold", prefix, 0, MAX_THRESHOLD)
    if weight is None:
        weight = old.weight if old is not None else 1
    if upper is None:
        upper = old.upper_threshold if old is not None else 0
    if lower is None:
        lower = old.lower_threshold if old is not None else 0
    _check_thresholds(upper, lower, prefix)
    inherited = old if old is not None and old.forwarding == "tunnel" else None
    tunnel_type, tunnel_port, checksum = _tunnel(params, prefix, forwarding, inherited)
    return RealServer(
        address=address,
        port=port,
        forwarding=forwarding,
        weight=weight,
        upper_threshold=upper,
        lower_threshold=lower,
        tunnel_type=tunnel_type,
        tunnel_port=tunnel_port,
        tunnel_checksum=checksum,
    )


def _real_server_address(params: Mapping[str, Any], prefix: str) -> str:
    address = _address(params, "address", prefix)
    if address is None:
        raise ValidationError(field_path(prefix, "address"), "is required")
    if ":" in address and ipaddress.IPv6Address(address).ipv4_mapped is not None:
        raise ValidationError(
            field_path(prefix, "address"),
            "the kernel refuses an IPv4-mapped IPv6 address (%s) as a real server; "
            "give the IPv4 address" % address,
        )
    return address


def _check_thresholds(upper: int, lower: int, prefix: str) -> None:
    if lower > upper:
        rule = "must not be above upper_threshold (%d)" % upper
        if upper == 0:
            rule = "needs an upper_threshold at or above it (0 means no upper threshold)"
        raise ValidationError(field_path(prefix, "lower_threshold"), rule)


def _only_server_at(
    existing: Mapping[Tuple[str, int], RealServer], address: str, prefix: str
) -> Optional[RealServer]:
    """The one current real server at `address` (port omitted), or None."""
    found = [server for server in existing.values() if server.address == address]
    if len(found) > 1:
        raise ValidationError(
            field_path(prefix, "port"),
            "is required: the service has %d real servers at %s (ports %s)"
            % (len(found), address, ", ".join(str(s.port) for s in sorted(found, key=_port))),
        )
    return found[0] if found else None


def _port(server: RealServer) -> int:
    return server.port


def _tunnel(
    params: Mapping[str, Any], prefix: str, forwarding: str, old: Optional[RealServer] = None
) -> Tuple[str, int, str]:
    """Tunnel settings; `old`: the current tunnel server whose settings omitted ones keep."""
    names = ("tunnel_type", "tunnel_port", "tunnel_checksum")
    if forwarding != "tunnel":
        for name in names:
            if params.get(name) is not None:
                raise ValidationError(
                    field_path(prefix, name), "only applies with forwarding tunnel"
                )
        return "ipip", 0, "none"
    given_type = _choice(params, "tunnel_type", prefix, TUNNEL_TYPES)
    tunnel_type = given_type or (old.tunnel_type if old is not None else "ipip")
    # Omitted port and checksum keep theirs while the tunnel type stays.
    same_type = old is not None and old.tunnel_type == tunnel_type
    tunnel_port = _integer(params, "tunnel_port", prefix, 1, 65535)
    if tunnel_port is None and same_type and old is not None and old.tunnel_port:
        tunnel_port = old.tunnel_port
    checksum = _choice(params, "tunnel_checksum", prefix, TUNNEL_CHECKSUMS)
    if checksum is None:
        checksum = old.tunnel_checksum if same_type and old is not None else "none"
    if tunnel_type == "gue" and tunnel_port is None:
        raise ValidationError(field_path(prefix, "tunnel_port"), "is required with tunnel_type gue")
    if tunnel_type != "gue" and tunnel_port is not None:
        raise ValidationError(field_path(prefix, "tunnel_port"), "only applies to tunnel_type gue")
    if tunnel_type == "ipip" and checksum != "none":
        raise ValidationError(field_path(prefix, "tunnel_checksum"), "needs tunnel_type gue or gre")
    if checksum == "remcsum" and tunnel_type != "gue":
        raise ValidationError(
            field_path(prefix, "tunnel_checksum"), "remcsum needs tunnel_type gue"
        )
    return tunnel_type, tunnel_port or 0, checksum
