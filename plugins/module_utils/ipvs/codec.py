# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPVS generic-netlink family: its constants, and services, real
servers and statistics to and from attributes.

Why not pyroute2's IPVS classes: building 11,000 messages with them costs
about 3.5 s and decoding a dump several seconds more, which is the whole
budget of a large converge.  This codec packs and unpacks the few
attributes IPVS uses with `struct` (see include/uapi/linux/ip_vs.h for every
constant below); ``genl`` frames and sends them.
"""

from __future__ import annotations

import struct
from _socket import AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, htons, inet_ntop, inet_pton, ntohs

from .genl import (
    _BE16,
    _FLAGS,
    _GENLHDR,
    _I32,
    _NLA,
    _U16,
    _U32,
    _U64,
    NLA_F_NESTED,
    _cstring,
    nla,
    nla_nested,
    parse_attrs,
)
from .model import (
    FORWARDING_LOCAL,
    IPV4,
    IPV6,
    SCHED_FLAG_BITS,
    RealServer,
    Service,
    ServiceKey,
    Stats,
)

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Dict, Optional

IPVS_GENL_NAME = b"IPVS"
IPVS_GENL_VERSION = 1

CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_SET_CONFIG = 12
CMD_GET_CONFIG = 13
CMD_GET_INFO = 15
CMD_ZERO = 16
CMD_FLUSH = 17

ATTR_SERVICE = 1
ATTR_DEST = 2
ATTR_DAEMON = 3
ATTR_TIMEOUT_TCP = 4
ATTR_TIMEOUT_TCP_FIN = 5
ATTR_TIMEOUT_UDP = 6

SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9
SVC_STATS = 10
SVC_PE_NAME = 11
SVC_STATS64 = 12

DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ACTIVE_CONNS = 7
DEST_INACT_CONNS = 8
DEST_PERSIST_CONNS = 9
DEST_STATS = 10
DEST_ADDR_FAMILY = 11
DEST_STATS64 = 12
DEST_TUN_TYPE = 13
DEST_TUN_PORT = 14
DEST_TUN_FLAGS = 15

INFO_VERSION = 1
INFO_CONN_TAB_SIZE = 2

SVC_F_PERSISTENT = 0x1
SVC_F_HASHED = 0x2
SVC_F_ONEPACKET = 0x4

AF = {IPV4: AF_INET, IPV6: AF_INET6}
AF_NAME = {AF_INET: IPV4, AF_INET6: IPV6}
PROTO = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "sctp": 132}
PROTO_NAME = {number: name for name, number in PROTO.items()}
FWD = {"masq": 0, FORWARDING_LOCAL: 1, "tunnel": 2, "route": 3}
FWD_NAME = {number: name for name, number in FWD.items()}
TUN_TYPE = {"ipip": 0, "gue": 1, "gre": 2}
TUN_TYPE_NAME = {number: name for name, number in TUN_TYPE.items()}
TUN_CSUM = {"none": 0, "csum": 1, "remcsum": 2}
TUN_CSUM_NAME = {number: name for name, number in TUN_CSUM.items()}


def _addr_bytes(address: str, family: str) -> bytes:
    packed = inet_pton(AF[family], address)
    return packed + b"\0" * (16 - len(packed))


def _addr_text(payload: bytes, family: str) -> str:
    if family == IPV4:
        return inet_ntop(AF_INET, payload[:4])
    text = inet_ntop(AF_INET6, payload[:16])
    if "." in text:
        # inet_ntop writes IPv4-mapped addresses as ::ffff:1.2.3.4; the model
        # uses ipaddress's canonical form everywhere.
        import ipaddress

        return ipaddress.IPv6Address(payload[:16]).compressed
    return text


# ------------------------------------------------------------------ services


def encode_service_key(key: ServiceKey) -> bytes:
    parts = [nla(SVC_AF, _U16.pack(AF[key.family]))]
    if key.is_fwmark:
        parts.append(nla(SVC_FWMARK, _U32.pack(key.fwmark)))
    else:
        parts.append(nla(SVC_PROTOCOL, _U16.pack(PROTO[key.protocol])))
        parts.append(nla(SVC_ADDR, _addr_bytes(key.address, key.family)))
        parts.append(nla(SVC_PORT, _BE16.pack(key.port)))
    return b"".join(parts)


def service_flag_bits(service: Service) -> int:
    flags = 0
    if service.persistent:
        flags |= SVC_F_PERSISTENT
    if service.one_packet:
        flags |= SVC_F_ONEPACKET
    for flag in service.scheduler_flags:
        flags |= SCHED_FLAG_BITS[flag.split("-", 1)[1]]
    return flags


def _netmask_bytes(service: Service) -> bytes:
    prefix = service.effective_prefix
    if service.key.family == IPV4:
        # An IPv4 netmask travels as the mask itself, in network order.
        return struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)
    return _U32.pack(prefix)


def encode_service(service: Service) -> bytes:
    """The full IPVS_CMD_ATTR_SERVICE attribute for NEW/SET_SERVICE."""
    parts = [
        encode_service_key(service.key),
        nla(SVC_SCHED_NAME, service.scheduler.encode() + b"\0"),
        nla(SVC_FLAGS, _FLAGS.pack(service_flag_bits(service), 0xFFFFFFFF)),
        nla(SVC_TIMEOUT, _U32.pack(service.persistence_timeout or 0)),
        nla(SVC_NETMASK, _netmask_bytes(service)),
    ]
    if service.persistence_engine:
        parts.append(nla(SVC_PE_NAME, service.persistence_engine.encode() + b"\0"))
    return nla_nested(ATTR_SERVICE, *parts)


def decode_service(attrs: Dict[int, bytes], with_stats: bool = False) -> Service:
    family = AF_NAME[_U16.unpack(attrs[SVC_AF][:2])[0]]
    if SVC_FWMARK in attrs:
        key = ServiceKey.for_fwmark(_U32.unpack(attrs[SVC_FWMARK][:4])[0], family)
    else:
        key = ServiceKey(
            family,
            PROTO_NAME.get(
                _U16.unpack(attrs[SVC_PROTOCOL][:2])[0],
                "proto-%d" % _U16.unpack(attrs[SVC_PROTOCOL][:2])[0],
            ),
            _addr_text(attrs[SVC_ADDR], family),
            _BE16.unpack(attrs[SVC_PORT][:2])[0],
            0,
        )
    scheduler = _cstring(attrs.get(SVC_SCHED_NAME, b""))
    flags = _FLAGS.unpack(attrs[SVC_FLAGS][:8])[0] if SVC_FLAGS in attrs else 0
    scheduler_flags = tuple(
        "%s-%s" % (scheduler, name) if scheduler in ("sh", "mh") else "flag-%s" % name
        for name, bit in SCHED_FLAG_BITS.items()
        if flags & bit
    )
    persistent = bool(flags & SVC_F_PERSISTENT)
    timeout = _U32.unpack(attrs[SVC_TIMEOUT][:4])[0] if SVC_TIMEOUT in attrs else 0
    prefix = None
    if persistent and SVC_NETMASK in attrs:
        if family == IPV4:
            prefix = bin(struct.unpack("!I", attrs[SVC_NETMASK][:4])[0]).count("1")
        else:
            prefix = _U32.unpack(attrs[SVC_NETMASK][:4])[0]
        if prefix == (32 if family == IPV4 else 128):
            prefix = None
    engine = _cstring(attrs[SVC_PE_NAME]) if SVC_PE_NAME in attrs else None
    stats = None
    if with_stats:
        stats = decode_stats(attrs.get(SVC_STATS64), attrs.get(SVC_STATS))
    return Service(
        key=key,
        scheduler=scheduler,
        scheduler_flags=scheduler_flags,
        one_packet=bool(flags & SVC_F_ONEPACKET),
        persistence_timeout=timeout if persistent else None,
        persistence_prefix=prefix,
        persistence_engine=engine or None,
        stats=stats,
    )


def decode_stats(stats64: Optional[bytes], stats32: Optional[bytes]) -> Optional[Stats]:
    if stats64 is not None:
        attrs = parse_attrs(stats64)
        values = [_U64.unpack(attrs[i + 1][:8])[0] if i + 1 in attrs else 0 for i in range(10)]
    elif stats32 is not None:
        attrs = parse_attrs(stats32)
        values = []
        for i in range(10):
            payload = attrs.get(i + 1, b"")
            if len(payload) >= 8:
                values.append(_U64.unpack(payload[:8])[0])
            elif len(payload) >= 4:
                values.append(_U32.unpack(payload[:4])[0])
            else:
                values.append(0)
    else:
        return None
    return Stats(*values)


# ------------------------------------------------------------- real servers


# ADDR, PORT, ADDR_FAMILY as one attribute block: the key of a destination.
_DEST_KEY = struct.Struct("=HH16s" + "HHH2x" + "HHH2x")
# ... followed by FWD_METHOD, WEIGHT, U_THRESH, L_THRESH.
_DEST_SETTINGS = struct.Struct("=HHI" + "HHI" + "HHI" + "HHI")
_DEST_TUNNEL = struct.Struct("=HHB3x" + "HHH2x" + "HHH2x")


# The whole IPVS_CMD_ATTR_DEST of a server that is not a tunnel, in one pack
# (a create sends one per real server): key, then settings.
_DEST_FULL = struct.Struct("=HH" + _DEST_KEY.format[1:] + _DEST_SETTINGS.format[1:])


def encode_real_server(server: RealServer, full: bool = True) -> bytes:
    """IPVS_CMD_ATTR_DEST; `full=False` gives just the key (for DEL_DEST)."""
    address = server.address
    af = AF_INET6 if ":" in address else AF_INET
    # "16s" pads an IPv4 address with zeros; htons packed in the host's
    # order is the port in network order.  The arguments are spelled out
    # here and again below: sharing them as tuples unpacked into each pack
    # made this, the path of every created real server, 0.44 -> 0.70 us.
    if full and server.forwarding != "tunnel":
        return _DEST_FULL.pack(
            _DEST_FULL.size, ATTR_DEST | NLA_F_NESTED,
            20, DEST_ADDR, inet_pton(af, address),
            6, DEST_PORT, htons(server.port),
            6, DEST_ADDR_FAMILY, af,
            8, DEST_FWD_METHOD, FWD[server.forwarding],
            8, DEST_WEIGHT, server.weight,
            8, DEST_U_THRESH, server.upper_threshold,
            8, DEST_L_THRESH, server.lower_threshold,
        )  # fmt: skip
    body = _DEST_KEY.pack(
        20, DEST_ADDR, inet_pton(af, address),
        6, DEST_PORT, htons(server.port),
        6, DEST_ADDR_FAMILY, af,
    )  # fmt: skip
    if full:
        body += _DEST_SETTINGS.pack(
            8, DEST_FWD_METHOD, FWD[server.forwarding],
            8, DEST_WEIGHT, server.weight,
            8, DEST_U_THRESH, server.upper_threshold,
            8, DEST_L_THRESH, server.lower_threshold,
        )  # fmt: skip
        body += _DEST_TUNNEL.pack(
            5, DEST_TUN_TYPE, TUN_TYPE[server.tunnel_type],
            6, DEST_TUN_PORT, htons(server.tunnel_port),
            6, DEST_TUN_FLAGS, TUN_CSUM[server.tunnel_checksum],
        )  # fmt: skip
    return _NLA.pack(4 + len(body), ATTR_DEST | NLA_F_NESTED) + body


def decode_real_server(
    attrs: Dict[int, bytes], service_family: str, with_stats: bool = False
) -> RealServer:
    family = service_family
    if DEST_ADDR_FAMILY in attrs:
        family = AF_NAME.get(_U16.unpack(attrs[DEST_ADDR_FAMILY][:2])[0], service_family)
    u32 = _U32.unpack
    forwarding = FWD_NAME.get(u32(attrs[DEST_FWD_METHOD][:4])[0] & 0x7, "route")
    tunnel_type, tunnel_port, checksum = "ipip", 0, "none"
    if forwarding == "tunnel":
        if DEST_TUN_TYPE in attrs:
            tunnel_type = TUN_TYPE_NAME.get(attrs[DEST_TUN_TYPE][0], "ipip")
        if DEST_TUN_PORT in attrs:
            tunnel_port = _BE16.unpack(attrs[DEST_TUN_PORT][:2])[0]
        if DEST_TUN_FLAGS in attrs:
            checksum = TUN_CSUM_NAME.get(_U16.unpack(attrs[DEST_TUN_FLAGS][:2])[0], "none")
    return RealServer(
        address=_addr_text(attrs[DEST_ADDR], family),
        port=_BE16.unpack(attrs[DEST_PORT][:2])[0],
        forwarding=forwarding,
        weight=_I32.unpack(attrs[DEST_WEIGHT][:4])[0],
        upper_threshold=u32(attrs[DEST_U_THRESH][:4])[0],
        lower_threshold=u32(attrs[DEST_L_THRESH][:4])[0],
        tunnel_type=tunnel_type,
        tunnel_port=tunnel_port,
        tunnel_checksum=checksum,
        active_connections=u32(attrs[DEST_ACTIVE_CONNS][:4])[0]
        if DEST_ACTIVE_CONNS in attrs
        else 0,
        inactive_connections=u32(attrs[DEST_INACT_CONNS][:4])[0]
        if DEST_INACT_CONNS in attrs
        else 0,
        persistent_connections=u32(attrs[DEST_PERSIST_CONNS][:4])[0]
        if DEST_PERSIST_CONNS in attrs
        else 0,
        stats=decode_stats(attrs.get(DEST_STATS64), attrs.get(DEST_STATS)) if with_stats else None,
    )


# The kernel (5.3+) writes a destination's fixed attributes always in this
# order (ip_vs_genl_fill_dest); one unpack reads them all, and the headers
# are checked so any other layout falls back to the generic parser.
_DEST_FIXED = struct.Struct(
    "=HH16s" + "HHH2x" + "HHI" + "HHi" + "HHB3x" + "HHH2x" + "HHH2x" + "HHI" * 5 + "HHH2x"
)
_DEST_FIXED_LENGTHS = (20, 6, 8, 8, 5, 6, 6, 8, 8, 8, 8, 8, 6)
_DEST_FIXED_TYPES = (
    DEST_ADDR,
    DEST_PORT,
    DEST_FWD_METHOD,
    DEST_WEIGHT,
    DEST_TUN_TYPE,
    DEST_TUN_PORT,
    DEST_TUN_FLAGS,
    DEST_U_THRESH,
    DEST_L_THRESH,
    DEST_ACTIVE_CONNS,
    DEST_INACT_CONNS,
    DEST_PERSIST_CONNS,
    DEST_ADDR_FAMILY,
)
# genlmsghdr (4) + the IPVS_CMD_ATTR_DEST header (4)
_DEST_OFFSET = _GENLHDR.size + _NLA.size


def decode_real_server_message(
    payload: bytes, service_family: str, with_stats: bool = False
) -> RealServer:
    """A real server from one GET_DEST answer (the bytes after nlmsghdr)."""
    if len(payload) >= _DEST_OFFSET + _DEST_FIXED.size:
        fields = _DEST_FIXED.unpack_from(payload, _DEST_OFFSET)
        if fields[0::3] == _DEST_FIXED_LENGTHS and fields[1::3] == _DEST_FIXED_TYPES:
            af = fields[38]
            if af == AF_INET:
                address = inet_ntop(AF_INET, fields[2][:4])
            else:
                address = _addr_text(fields[2], IPV6)
            forwarding = FWD_NAME.get(fields[8] & 0x7, "route")
            tunnel = forwarding == "tunnel"
            stats = None
            if with_stats:
                rest = parse_attrs(payload, _DEST_OFFSET + _DEST_FIXED.size)
                stats = decode_stats(rest.get(DEST_STATS64), rest.get(DEST_STATS))
            return RealServer(
                address,
                ntohs(fields[5]),
                forwarding,
                fields[11],
                fields[23],
                fields[26],
                TUN_TYPE_NAME.get(fields[14], "ipip") if tunnel else "ipip",
                ntohs(fields[17]) if tunnel else 0,
                TUN_CSUM_NAME.get(fields[20], "none") if tunnel else "none",
                fields[29],
                fields[32],
                fields[35],
                stats,
            )
    top = parse_attrs(payload, _GENLHDR.size)
    return decode_real_server(parse_attrs(top[ATTR_DEST]), service_family, with_stats)
