# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one IPVS engine: read the kernel table, apply a plan, undo on failure.

Every module and the monitor go through `IPVS`.  It speaks netlink through
`genl` and `codec`, plans with `plan` and never imports Ansible, so the
monitor runs the very same file.
"""

from __future__ import annotations

import errno

from . import kmod
from .codec import (
    ATTR_SERVICE,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_GET_DEST,
    CMD_GET_INFO,
    CMD_GET_SERVICE,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    INFO_CONN_TAB_SIZE,
    INFO_VERSION,
    IPVS_GENL_NAME,
    decode_real_server_message,
    decode_service,
    encode_real_server,
    encode_service,
    encode_service_key,
)
from .errors import HaecsError
from .genl import (
    Batch,
    GenlSocket,
    NetlinkError,
    nla_nested,
    parse_attrs,
)
from .model import ServiceKey, Table, VirtualService
from .plan import (
    ADD_REAL_SERVER,
    ADD_SERVICE,
    DELETE_REAL_SERVER,
    DELETE_SERVICE,
    SET_REAL_SERVER,
    SET_SERVICE,
    Operation,
)

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import (
        Callable,
        Collection,
        Dict,
        Iterable,
        Iterator,
        List,
        Optional,
        Sequence,
        Tuple,
    )

_COMMANDS = {
    ADD_SERVICE: CMD_NEW_SERVICE,
    SET_SERVICE: CMD_SET_SERVICE,
    DELETE_SERVICE: CMD_DEL_SERVICE,
    ADD_REAL_SERVER: CMD_NEW_DEST,
    SET_REAL_SERVER: CMD_SET_DEST,
    DELETE_REAL_SERVER: CMD_DEL_DEST,
}

# What the kernel's errno means for each kind of IPVS command.
_ERRNO_HINTS = {
    errno.EEXIST: "it exists already",
    errno.ESRCH: "no such virtual service",
    errno.ENOENT: "not found (a real server that does not exist, or a scheduler / persistence engine the kernel cannot load)",
    errno.ERANGE: "a value is out of range (weight below 0, or lower threshold above upper threshold)",
    errno.EINVAL: "the kernel rejected the settings",
    errno.EAFNOSUPPORT: "address family not supported by this kernel",
    errno.EPERM: "permission denied: managing IPVS needs root (CAP_NET_ADMIN)",
}


class IPVSError(HaecsError, RuntimeError):
    """IPVS is unavailable, or the kernel refused a change (after undo)."""

    def __init__(
        self, message: str, operation: Optional[Operation] = None, rolled_back: bool = False
    ) -> None:
        self.operation = operation
        self.refused = operation.ipvsadm_line() if operation is not None else None
        self.rolled_back = rolled_back
        super().__init__(message)


class ApplyResult:
    """What `apply` did: the operations sent and the netlink sends it took."""

    __slots__ = ("operations", "sends")

    def __init__(self, operations: Optional[List[Operation]] = None, sends: int = 0) -> None:
        self.operations: List[Operation] = [] if operations is None else operations
        self.sends = sends

    def __repr__(self) -> str:
        return "ApplyResult(operations=%r, sends=%r)" % (self.operations, self.sends)


class IPVS:
    """A connection to the kernel's IPVS table.

    `load_module` is called with a module name when ip_vs itself or a
    scheduler must be loaded; tests pass a fake, real use leaves the default.
    """

    def __init__(self, load_module: Callable[[str], None] = kmod.load) -> None:
        self._load_module = load_module
        self._sock = self._open()

    def _open(self) -> GenlSocket:
        try:
            return GenlSocket(IPVS_GENL_NAME)
        except NetlinkError as error:
            if error.code != errno.ENOENT:
                raise IPVSError("cannot open IPVS netlink: %s" % error) from None
        except PermissionError:
            raise IPVSError(_ERRNO_HINTS[errno.EPERM]) from None
        # The IPVS family appears once the ip_vs module is loaded.
        try:
            self._load_module("ip_vs")
        except kmod.KernelModuleError as error:
            raise IPVSError("IPVS is not available in this kernel: %s" % error) from None
        try:
            return GenlSocket(IPVS_GENL_NAME)
        except NetlinkError as error:
            raise IPVSError(
                "IPVS is not available in this kernel after loading ip_vs: %s" % error
            ) from None

    @property
    def socket(self) -> GenlSocket:
        """The IPVS netlink socket, for settings outside the table (ipvs_config)."""
        return self._sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> IPVS:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- read

    def info(self) -> Dict[str, object]:
        try:
            answer = self._sock.request(CMD_GET_INFO)[0]
        except NetlinkError as error:
            raise IPVSError("reading IPVS information failed: %s" % _explain(error)) from None
        version = (
            int.from_bytes(answer[INFO_VERSION][:4], "little") if INFO_VERSION in answer else 0
        )
        size = (
            int.from_bytes(answer[INFO_CONN_TAB_SIZE][:4], "little")
            if INFO_CONN_TAB_SIZE in answer
            else 0
        )
        return {
            "version": "%d.%d.%d" % (version >> 16, (version >> 8) & 0xFF, version & 0xFF),
            "connection_table_size": size,
        }

    def read(
        self,
        with_stats: bool = False,
        services_only: bool = False,
        only: Optional[Collection[ServiceKey]] = None,
    ) -> Table:
        """The table in one service dump and one dest dump per service.

        `only` limits the result to those services (the others are not
        returned at all), so a module about one service stays fast on a
        director with thousands.
        """
        try:
            return self._read(with_stats, services_only, only)
        except NetlinkError as error:
            raise IPVSError("reading the IPVS table failed: %s" % _explain(error)) from None

    def read_each(
        self, with_stats: bool = False, only: Optional[Collection[ServiceKey]] = None
    ) -> Iterator[VirtualService]:
        """`read`, one service at a time: each entry's real servers are read
        when the iteration reaches it, so a caller that keeps only what it
        needs of each never holds the whole table (the monitor's reconcile:
        8 MB of RSS at 30,000 real servers, for good, when it read it all)."""
        try:
            services = self._read(with_stats, True, only)
            for key in list(services):
                entry = services.pop(key)  # held by the caller alone
                self._read_real_servers(entry, with_stats)
                yield entry
        except NetlinkError as error:
            raise IPVSError("reading the IPVS table failed: %s" % _explain(error)) from None

    def _read(
        self, with_stats: bool, services_only: bool, only: Optional[Collection[ServiceKey]]
    ) -> Table:
        table: Table = {}
        wanted = None if only is None else set(only)
        for answer in self._sock.request(CMD_GET_SERVICE, dump=True):
            service = decode_service(parse_attrs(answer[ATTR_SERVICE]), with_stats)
            if wanted is None or service.key in wanted:
                table[service.key] = VirtualService(service)
        if services_only:
            return table
        for entry in table.values():
            self._read_real_servers(entry, with_stats)
        return table

    def _read_real_servers(self, entry: VirtualService, with_stats: bool) -> None:
        key = entry.key
        request = nla_nested(ATTR_SERVICE, encode_service_key(key))
        servers = entry.real_servers
        for raw in self._sock.dump_raw(CMD_GET_DEST, request):
            server = decode_real_server_message(raw, key.family, with_stats)
            servers[server.address, server.port] = server

    # ---------------------------------------------------------------- write

    def load_modules_for(self, operations: Iterable[Operation]) -> None:
        """Load every scheduler and persistence engine the operations use."""
        schedulers = set()
        engines = set()
        for op in operations:
            if op.kind in (ADD_SERVICE, SET_SERVICE):
                schedulers.add(op.service.scheduler)
                if op.service.persistence_engine:
                    engines.add(op.service.persistence_engine)
        for module in kmod.modules_for(schedulers, engines):
            try:
                self._load_module(module)
            except kmod.KernelModuleError as error:
                raise IPVSError(str(error)) from None

    def apply(self, operations: Sequence[Operation], chunk_bytes: int = 32768) -> ApplyResult:
        """Apply all operations or none.

        If the kernel refuses one, every operation that took effect is undone
        in reverse order and IPVSError names the refused entry.
        """
        result = ApplyResult()
        if not operations:
            return result
        self.load_modules_for(operations)
        messages = self._encode_all(operations)
        batch = self._sock.batch(messages, chunk_bytes)
        if not batch.failed:
            result.operations = list(operations)
            return result
        done = self._applied(operations, batch)
        undo_error = self._undo(done)
        if batch.errors:
            index, error = batch.errors[0]
            failed_op: Optional[Operation] = operations[index]
            message = "kernel refused `%s`: %s" % (
                operations[index].ipvsadm_line(),
                _explain(error),
            )
        else:
            failed_op = None
            message = "the kernel's answers to a batch were lost (netlink socket overflow)"
        if undo_error:
            raise IPVSError(
                message + "; undoing the earlier changes also failed: %s" % undo_error, failed_op
            )
        if done:
            message += "; the %d change(s) already made were undone" % len(done)
        raise IPVSError(message, failed_op, rolled_back=True)

    def _applied(self, operations: Sequence[Operation], batch: Batch) -> List[Operation]:
        """The operations that took effect: every one sent and not refused.

        The kernel answers each refused message of a chunk and keeps going,
        so the refusals say exactly what was applied, even for an entry that
        existed before (a table read could not tell "added now" from "was
        there": undoing it would delete what the batch never made).  Only
        when refusals were lost is the table read, and later operations of
        the failed chunk are then counted by what the table shows.
        """
        refused = {index for index, _error in batch.errors}
        sent = operations[: batch.sent]
        if not batch.answers_lost:
            return [op for index, op in enumerate(sent) if index not in refused]
        first = min(refused, default=0)
        table = self.read()
        return list(sent[:first]) + [
            op for index, op in enumerate(sent) if index > first and _took_effect(op, table)
        ]

    def _undo(self, done: Sequence[Operation]) -> Optional[str]:
        inverse = [undo for op in reversed(done) for undo in op.inverse()]
        if not inverse:
            return None
        batch = self._sock.batch(self._encode_all(inverse))
        if batch.errors:
            index, error = batch.errors[0]
            return "`%s`: %s" % (inverse[index].ipvsadm_line(), _explain(error))
        if batch.answers_lost:
            return "the kernel's answers were lost (netlink socket overflow)"
        return None

    def _encode_all(self, operations: Sequence[Operation]) -> List[Tuple[int, bytes]]:
        # Many operations share a service: encode each service key once.
        keys: Dict[ServiceKey, bytes] = {}
        messages = []
        for op in operations:
            key = op.service.key
            if op.kind == ADD_SERVICE or op.kind == SET_SERVICE:
                payload = encode_service(op.service)
            else:
                service = keys.get(key)
                if service is None:
                    service = keys[key] = nla_nested(ATTR_SERVICE, encode_service_key(key))
                payload = service
                if op.real_server is not None:
                    payload += encode_real_server(
                        op.real_server, full=op.kind != DELETE_REAL_SERVER
                    )
            messages.append(self._sock.message(_COMMANDS[op.kind], payload))
        return messages


def _took_effect(op: Operation, table: Table) -> bool:
    entry = table.get(op.service.key)
    if op.kind == ADD_SERVICE:
        return entry is not None
    if op.kind == SET_SERVICE:
        return entry is not None and entry.service == op.service
    if op.kind == DELETE_SERVICE:
        return entry is None
    if op.real_server is None:
        raise ValueError("%s needs a real server" % op.kind)
    server = entry.real_servers.get(op.real_server.key) if entry else None
    if op.kind == ADD_REAL_SERVER:
        return server is not None
    if op.kind == SET_REAL_SERVER:
        return server is not None and server.same_as(op.real_server)
    return server is None


def _explain(error: NetlinkError) -> str:
    hint = _ERRNO_HINTS.get(error.code)
    return "%s (%s)" % (error.strerror, hint) if hint else str(error.strerror)
