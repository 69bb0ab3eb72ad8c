# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generic netlink: message framing, attributes and a batching socket.

Nothing here knows IPVS (that is ``codec``): one socket bound to one
generic-netlink family sends many messages per ``sendmsg`` and matches the
kernel's errors to them by sequence number.
"""

from __future__ import annotations

import errno
import os
import struct
from _socket import (
    AF_NETLINK,
    MSG_DONTWAIT,
    SO_RCVBUF,
    SO_SNDBUF,
    SOCK_RAW,
    SOL_SOCKET,
)
from _socket import socket as raw_socket

from .errors import HaecsError

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

NETLINK_GENERIC = 16
# A dump answer is at most 32 KB per datagram; errors are far smaller.
RECV_BUFFER_BYTES = 1 << 20
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
NLMSGERR_ATTR_MSG = 1

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_U8 = struct.Struct("=B")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_BE16 = struct.Struct("!H")
_I32 = struct.Struct("=i")
_FLAGS = struct.Struct("=II")
_HEADER_SIZE = _NLMSGHDR.size + _GENLHDR.size
_HEADERS = struct.Struct("=IHHII" + "BBH")  # both headers in one pack


class NetlinkError(HaecsError, OSError):
    """The kernel refused a netlink request."""

    family = "IPVS"  # the only family the collection speaks

    def message(self) -> str:
        return "%s netlink request failed: %s" % (self.family, self.strerror)

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        text = os.strerror(code)
        if message:
            text = "%s (%s)" % (text, message)
        super().__init__(code, text)


# ---------------------------------------------------------------- attributes


def nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, attr_type) + payload + b"\0" * (-length % 4)


def nla_nested(attr_type: int, *children: bytes) -> bytes:
    return nla(attr_type | NLA_F_NESTED, b"".join(children))


def parse_attrs(buf: bytes, offset: int = 0, end: Optional[int] = None) -> Dict[int, bytes]:
    """Attributes of a flat TLV area as {type: payload}."""
    if end is None:
        end = len(buf)
    attrs = {}
    unpack = _NLA.unpack_from
    while offset + 4 <= end:
        length, attr_type = unpack(buf, offset)
        if length < 4:
            break
        attrs[attr_type & NLA_TYPE_MASK] = buf[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return attrs


def _cstring(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode()


# -------------------------------------------------------------------- socket


class Batch:
    """What one `GenlSocket.batch` did."""

    __slots__ = ("answers_lost", "errors", "sent")

    def __init__(
        self, sent: int, errors: List[Tuple[int, NetlinkError]], answers_lost: bool
    ) -> None:
        self.sent = sent  # messages sent (the kernel handled every one of them)
        self.errors = errors  # (index, error) of each refused one, in order
        self.answers_lost = answers_lost  # the socket overflowed: some refusals may be missing

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.answers_lost

    def __repr__(self) -> str:
        return "Batch(sent=%d, errors=%r, answers_lost=%r)" % (
            self.sent,
            self.errors,
            self.answers_lost,
        )


class GenlSocket:
    """A generic-netlink socket bound to one family."""

    def __init__(self, family_name: bytes, version: int = 1, buffer_bytes: int = 8 << 20) -> None:
        self.version = version
        self.sock = raw_socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC)
        self._buffer = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        try:
            self.sock.bind((0, 0))
            self._set_buffers(buffer_bytes)
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, option, 1)
                except OSError:
                    pass
            self.seq = 0
            self.family_id = self.resolve_family(family_name)
        except BaseException:
            self.sock.close()
            raise

    def _recv(self, flags: int) -> bytes:
        # One reusable buffer: a fresh 1 MB bytes object per recv costs an
        # mmap/munmap pair and page faults each time (very slow under UML).
        length = self.sock.recv_into(self._buffer, 0, flags)
        return bytes(self._view[:length])

    def _set_buffers(self, size: int) -> None:
        for force, plain in (
            (SO_RCVBUFFORCE, SO_RCVBUF),
            (SO_SNDBUFFORCE, SO_SNDBUF),
        ):
            try:
                self.sock.setsockopt(SOL_SOCKET, force, size)
            except OSError:
                self.sock.setsockopt(SOL_SOCKET, plain, size)

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    def message(
        self,
        cmd: int,
        payload: bytes,
        flags: int = NLM_F_REQUEST,
        seq: Optional[int] = None,
        msg_type: Optional[int] = None,
        version: Optional[int] = None,
    ) -> Tuple[int, bytes]:
        if seq is None:
            seq = self.next_seq()
        headers = _HEADERS.pack(
            _HEADER_SIZE + len(payload),
            self.family_id if msg_type is None else msg_type,
            flags,
            seq,
            0,
            cmd,
            self.version if version is None else version,
            0,
        )
        return seq, headers + payload

    def resolve_family(self, name: bytes) -> int:
        seq, request = self.message(
            CTRL_CMD_GETFAMILY,
            nla(CTRL_ATTR_FAMILY_NAME, name + b"\0"),
            msg_type=GENL_ID_CTRL,
            version=1,
        )
        self.sock.send(request)
        for _msg_type, _flags, payload in self._replies(seq):
            attrs = parse_attrs(payload, _GENLHDR.size)
            if CTRL_ATTR_FAMILY_ID in attrs:
                family_id: int = _U16.unpack(attrs[CTRL_ATTR_FAMILY_ID][:2])[0]
                return family_id
        raise NetlinkError(errno.ENOENT, "no generic netlink family %s" % name.decode())

    def _replies(self, seq: int) -> Iterator[Tuple[int, int, bytes]]:
        """Yield (type, flags, payload) of the answers to `seq` until its end."""
        while True:
            finished = False
            for msg_type, flags, msg_seq, payload in messages(self._recv(0)):
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_DONE:
                    finished = True
                    continue
                if msg_type == NLMSG_ERROR:
                    code = -_I32.unpack_from(payload)[0]
                    if code:
                        raise NetlinkError(code, _ext_ack_message(payload, flags))
                    finished = True
                    continue
                yield msg_type, flags, payload
                if not flags & NLM_F_MULTI:
                    finished = True
            if finished:
                return

    def dump_raw(self, cmd: int, payload: bytes = b"") -> Iterator[bytes]:
        """The raw answers (genl header and attributes) of one dump request."""
        seq, message = self.message(cmd, payload, NLM_F_REQUEST | NLM_F_DUMP)
        self.sock.send(message)
        for _t, _f, answer in self._replies(seq):
            yield answer

    def request(self, cmd: int, payload: bytes = b"", dump: bool = False) -> List[Dict[int, bytes]]:
        """One request; returns the top-level attributes of each answer."""
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        seq, message = self.message(cmd, payload, flags)
        self.sock.send(message)
        return [parse_attrs(payload, _GENLHDR.size) for _t, _f, payload in self._replies(seq)]

    def batch(self, messages: Sequence[Tuple[int, bytes]], chunk_bytes: int = 32768) -> Batch:
        """Send (seq, message) pairs many per sendmsg, stopping after the chunk
        in which the first error occurs.

        The kernel handles a netlink send synchronously and keeps going after
        a failed message, answering only failures (no ACK flag), so after each
        chunk the socket holds exactly the errors of that chunk: every
        message sent and not answered with an error was applied (unless
        the answers overflowed the socket: `answers_lost`).
        """
        index_of = {}
        position = 0
        while position < len(messages):
            chunk: List[bytes] = []
            size = 0
            start = position
            while position < len(messages) and (
                not chunk or size + len(messages[position][1]) <= chunk_bytes
            ):
                seq, message = messages[position]
                index_of[seq] = position
                chunk.append(message)
                size += len(message)
                position += 1
            self.sock.send(b"".join(chunk))
            errors, lost = self._drain_errors()
            if errors or lost:
                indexed = sorted(
                    ((index_of.get(seq, start), error) for seq, error in errors),
                    key=lambda item: item[0],
                )
                return Batch(position, indexed, lost)
        return Batch(position, [], False)

    def _drain_errors(self) -> Tuple[List[Tuple[int, NetlinkError]], bool]:
        """The errors the socket holds, and whether some were lost (ENOBUFS)."""
        errors: List[Tuple[int, NetlinkError]] = []
        lost = False
        while True:
            try:
                data = self._recv(MSG_DONTWAIT)
            except BlockingIOError:
                return errors, lost
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            for msg_type, flags, seq, payload in messages(data):
                if msg_type == NLMSG_ERROR:
                    code = -_I32.unpack_from(payload)[0]
                    if code:
                        errors.append((seq, NetlinkError(code, _ext_ack_message(payload, flags))))


def messages(data: bytes) -> Iterator[Tuple[int, int, int, bytes]]:
    """(type, flags, sequence, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        yield msg_type, flags, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _ext_ack_message(payload: bytes, flags: int) -> str:
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # error code, then the original header (capped: header only), then TLVs.
    original_length = _NLMSGHDR.unpack_from(payload, 4)[0] if len(payload) >= 20 else 16
    offset = 4 + (original_length if not flags & 0x100 else _NLMSGHDR.size)
    attrs = parse_attrs(payload, offset)
    if NLMSGERR_ATTR_MSG in attrs:
        return _cstring(attrs[NLMSGERR_ATTR_MSG])
    return ""
