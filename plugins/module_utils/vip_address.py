# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A virtual IP on an interface, and the ARP settings a DR real server needs.

Pure parts (parsing, planning, text) are separate from the two effects:
rtnetlink through pyroute2 (imported lazily, so a missing pyroute2 is a
clear error and the pure parts stay testable) and /proc/sys writes.
No Ansible import.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .ipvs import kmod as ipvs_kmod
from .ipvs.errors import HaecsError
from .ipvs.params import ValidationError

IFNAME_MAX = 15
SCOPES = {"global": 0, "link": 253, "host": 254}
SCOPE_NAMES = {number: name for name, number in SCOPES.items()}
IFA_F_NODAD = 0x02
AF_INET = 2
AF_INET6 = 10

PROC_SYS = "/proc/sys"
# arp_ignore=1: answer ARP only for addresses on the receiving interface.
# arp_announce=2: use the best local address of the outgoing interface as ARP source.
# The kernel uses the larger of conf/all and conf/<interface>.
ARP_SETTINGS = (("arp_ignore", 1), ("arp_announce", 2))


class VipError(HaecsError, RuntimeError):
    """An rtnetlink or sysctl change failed, or pyroute2 is missing."""


class MissingLibrary(VipError):
    """pyroute2 cannot be imported."""

    def __init__(self, library: str, error: Exception) -> None:
        self.library = library
        self.error = error
        super().__init__("%s is needed: %s" % (library, error))


# -------------------------------------------------------------------- model


@dataclass(frozen=True)
class Address:
    """One address on an interface, as `ip address` shows it."""

    address: str
    prefix_length: int
    scope: str = "global"
    label: Optional[str] = None  # IPv4 only; None on IPv6

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version

    def line(self, interface: str) -> str:
        """`ip address show`-style: inet 192.0.2.10/32 scope global lo:vip."""
        if self.version == 4:
            return "inet %s/%d scope %s %s" % (
                self.address,
                self.prefix_length,
                self.scope,
                self.label or interface,
            )
        return "inet6 %s/%d scope %s dev %s" % (
            self.address,
            self.prefix_length,
            self.scope,
            interface,
        )

    def command(self, verb: str, interface: str) -> str:
        """The `ip address add|del` command for this address."""
        text = "ip address %s %s/%d dev %s" % (verb, self.address, self.prefix_length, interface)
        if verb == "add" and self.version == 4:
            text += " scope %s" % self.scope
            if self.label and self.label != interface:
                text += " label %s" % self.label
        return text

    def as_dict(self) -> Dict[str, Any]:
        return {
            "address": self.address,
            "prefix_length": self.prefix_length,
            "scope": self.scope,
            "label": self.label,
        }


@dataclass(frozen=True)
class Vip:
    """What the module was asked for."""

    address: str
    prefix_length: int
    interface: str
    state: str = "present"
    scope: Optional[str] = "global"  # None: IPv6, the kernel derives it
    label: Optional[str] = None  # None: leave an existing label, default on add
    create_dummy: bool = False
    nodad: bool = True
    arp_suppress: bool = False
    link_up: bool = False

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version

    def matches(self, found: Address) -> bool:
        """Whether an existing entry of this address is what was asked for."""
        if found.prefix_length != self.prefix_length:
            return False
        if self.scope is not None and found.scope != self.scope:
            return False
        return self.label is None or found.label == self.label

    def wanted(self, replacing: Optional[Address] = None) -> Address:
        """The entry to add; without a label of its own it keeps the label
        of the entry it replaces."""
        label = self.label or (replacing.label if replacing is not None else None)
        label = label or (self.interface if self.version == 4 else None)
        scope = self.scope if self.scope is not None else "global"
        return Address(self.address, self.prefix_length, scope, label)


# ------------------------------------------------------------------ parsing


def parse_vip(params: Mapping[str, Any]) -> Vip:
    """Check every option; errors name the option."""
    state = params.get("state") or "present"
    interface = params.get("interface") or "lo"
    if (
        len(interface) > IFNAME_MAX
        or "/" in interface
        or ":" in interface
        or any(c.isspace() for c in interface)
    ):
        raise ValidationError("interface", "is not a valid interface name: %r" % interface)
    address, prefix_from_address = _split_address(params.get("address"))
    version = address.version
    prefix = _prefix_length(params.get("prefix_length"), prefix_from_address, version)
    if address.is_multicast or address.is_unspecified:
        raise ValidationError("address", "must be a unicast address, got %s" % address)
    scope = _scope(params.get("scope"), version)
    label = _label(params.get("label"), interface, version)
    return Vip(
        address=address.compressed,
        prefix_length=prefix,
        interface=interface,
        state=state,
        scope=scope,
        label=label,
        create_dummy=bool(params.get("create_dummy")),
        nodad=params.get("nodad", True) is not False,
        arp_suppress=bool(params.get("arp_suppress")),
        link_up=bool(params.get("link_up")),
    )


def _split_address(value: Any) -> Tuple[Any, Optional[int]]:
    text = str(value if value is not None else "").strip()
    if not text:
        raise ValidationError("address", "is required")
    host, _unused, prefix_text = text.partition("/")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValidationError(
            "address", "must be an IPv4 or IPv6 address, got %r" % (value,)
        ) from None
    if not prefix_text:
        return address, None
    if not prefix_text.isdigit():
        raise ValidationError("address", "has a prefix length that is not a number: %r" % (value,))
    return address, int(prefix_text)


def _prefix_length(value: Any, from_address: Optional[int], version: int) -> int:
    high = 32 if version == 4 else 128
    field_name = "prefix_length"
    if value is None:
        value = from_address
        field_name = "address"
    elif from_address is not None and from_address != value:
        raise ValidationError("prefix_length", "is %s but address says /%d" % (value, from_address))
    if value is None:
        return high
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValidationError(
            field_name,
            "%s an integer from 1 to %d for an IPv%d address, got %r"
            % (
                "has a prefix length that must be" if field_name == "address" else "must be",
                high,
                version,
                value,
            ),
        )
    return value


def _scope(value: Any, version: int) -> Optional[str]:
    if version == 6:
        if value is not None:
            raise ValidationError(
                "scope",
                "applies to IPv4 only: the kernel derives an IPv6 address's scope from the address",
            )
        return None
    if value is None:
        return "global"
    if value not in SCOPES:
        raise ValidationError("scope", "must be one of %s, got %r" % (", ".join(SCOPES), value))
    return str(value)


def _label(value: Any, interface: str, version: int) -> Optional[str]:
    if value is None:
        return None
    if version == 6:
        raise ValidationError("label", "applies to IPv4 only (IPv6 addresses have no label)")
    label = str(value)
    if len(label) > IFNAME_MAX or not (label == interface or label.startswith(interface + ":")):
        raise ValidationError(
            "label",
            "must be the interface name or start with %r, at most %d characters, got %r"
            % (interface + ":", IFNAME_MAX, label),
        )
    return label


# ----------------------------------------------------------------- planning


@dataclass
class Plan:
    """What to do, in order, and the entries of the address before and after."""

    create_interface: bool = False
    bring_up: bool = False
    remove: List[Address] = field(default_factory=list)
    add: Optional[Address] = None
    sysctls: List[Tuple[str, int, int]] = field(default_factory=list)  # (key, before, after)
    before: List[Address] = field(default_factory=list)
    after: List[Address] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.create_interface or self.bring_up or self.remove or self.add or self.sysctls
        )

    def commands(self, interface: str) -> List[str]:
        lines = []
        if self.create_interface:
            lines.append("ip link add %s type dummy" % interface)
        if self.bring_up:
            lines.append("ip link set %s up" % interface)
        lines += [entry.command("del", interface) for entry in self.remove]
        if self.add is not None:
            lines.append(self.add.command("add", interface))
        lines += ["sysctl -w %s=%d" % (key, new) for key, _old, new in self.sysctls]
        return lines


def plan_addresses(vip: Vip, existing: List[Address]) -> Plan:
    """Entries to remove and the entry to add for `vip`, given the entries of
    the same address now on the interface."""
    plan = Plan(before=list(existing))
    if vip.state == "absent":
        plan.remove = list(existing)
        return plan
    keep = [entry for entry in existing if vip.matches(entry)][:1]
    plan.remove = [entry for entry in existing if entry not in keep]
    if not keep:
        plan.add = vip.wanted(existing[0] if existing else None)
        plan.after = [plan.add]
    else:
        plan.after = keep
    return plan


def plan_sysctls(interface: str, read: Any) -> List[Tuple[str, int, int]]:
    """(key, current, wanted) for each ARP setting below what DR needs.

    `read(key)` returns the current value, or None when the key does not
    exist yet (an interface still to be created inherits conf/default).
    Values already above the wanted one are left: only raised, never lowered.
    """
    changes = []
    for scope in ("all", interface):
        for name, wanted in ARP_SETTINGS:
            key = "net.ipv4.conf.%s.%s" % (scope, name)
            current = read(key)
            if current is None:
                current = read("net.ipv4.conf.default.%s" % name) or 0
            if current < wanted:
                changes.append((key, current, wanted))
    return changes


def state_lines(
    interface: str, exists: bool, up: bool, entries: List[Address], sysctls: Dict[str, int]
) -> str:
    """Diff text: the interface, the VIP entries and the ARP settings."""
    if not exists:
        lines = ["interface %s: absent" % interface]
    else:
        lines = ["interface %s: %s" % (interface, "up" if up else "down")]
    lines += [entry.line(interface) for entry in entries]
    lines += ["%s = %d" % (key, value) for key, value in sorted(sysctls.items())]
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------ sysctls


def sysctl_path(key: str) -> str:
    # Interface names may contain dots: /proc/sys keeps them, only the
    # sysctl(8) notation would turn them into slashes.
    parts = key.split(".", 3)  # net, ipv4, conf, <interface>.<name>
    interface, _unused, name = parts[3].rpartition(".")
    return os.path.join(PROC_SYS, *parts[:3], interface, name)


def read_sysctl(key: str) -> Optional[int]:
    try:
        with open(sysctl_path(key)) as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise VipError("cannot read %s: %s" % (key, error)) from None


def write_sysctl(key: str, value: int) -> None:
    try:
        with open(sysctl_path(key), "w") as handle:
            handle.write("%d\n" % value)
    except OSError as error:
        raise VipError("cannot set %s=%d: %s" % (key, value, error.strerror or error)) from None


# --------------------------------------------------------------- rtnetlink


class Links:
    """The few rtnetlink calls the vip module makes, through pyroute2."""

    def __init__(self) -> None:
        try:
            from pyroute2 import IPRoute
        except ImportError as error:
            raise MissingLibrary("pyroute2", error) from None
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def index(self, interface: str) -> Optional[int]:
        found = self.ipr.link_lookup(ifname=interface)
        return int(found[0]) if found else None

    def is_up(self, index: int) -> bool:
        link = self.ipr.get_links(index)[0]
        return bool(link["flags"] & 0x1)  # IFF_UP

    def entries(self, index: int, address: str) -> List[Address]:
        """Every entry of `address` on the interface."""
        version = ipaddress.ip_address(address).version
        family = AF_INET if version == 4 else AF_INET6
        found = []
        for message in self.ipr.get_addr(family=family, index=index):
            if message["index"] != index:
                continue
            text = message.get_attr("IFA_LOCAL") if version == 4 else None
            text = text or message.get_attr("IFA_ADDRESS")
            if text is None or ipaddress.ip_address(text) != ipaddress.ip_address(address):
                continue
            found.append(
                Address(
                    address=ipaddress.ip_address(text).compressed,
                    prefix_length=int(message["prefixlen"]),
                    scope=SCOPE_NAMES.get(message["scope"], str(message["scope"])),
                    label=message.get_attr("IFA_LABEL") if version == 4 else None,
                )
            )
        return found

    def create_dummy(self, interface: str) -> int:
        self._call(
            "ip link add %s type dummy" % interface,
            self.ipr.link,
            "add",
            ifname=interface,
            kind="dummy",
        )
        index = self.index(interface)
        if index is None:
            raise VipError("interface %s was created but cannot be found" % interface)
        return index

    def bring_up(self, index: int, interface: str) -> None:
        self._call("ip link set %s up" % interface, self.ipr.link, "set", index=index, state="up")

    def remove(self, index: int, entry: Address, interface: str) -> None:
        self._call(
            entry.command("del", interface),
            self.ipr.addr,
            "del",
            index=index,
            address=entry.address,
            prefixlen=entry.prefix_length,
        )

    def add(self, index: int, entry: Address, interface: str, nodad: bool) -> None:
        arguments: Dict[str, Any] = {
            "index": index,
            "address": entry.address,
            "prefixlen": entry.prefix_length,
        }
        if entry.version == 4:
            arguments["scope"] = SCOPES[entry.scope]
            if entry.label:
                arguments["label"] = entry.label
        else:
            ensure_ipv6()
            if nodad:
                arguments["flags"] = IFA_F_NODAD
        try:
            self._call(entry.command("add", interface), self.ipr.addr, "add", **arguments)
        except VipError as error:
            if entry.version == 6 and "not supported" in str(error):
                raise VipError(
                    "%s (IPv6 is disabled on %s or in this kernel)" % (error, interface)
                ) from None
            raise

    @staticmethod
    def _call(command: str, method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as error:  # pyroute2 raises NetlinkError (an OSError) and others
            detail = getattr(error, "args", None)
            text = str(detail[1]) if isinstance(detail, tuple) and len(detail) > 1 else str(error)
            raise VipError("`%s` failed: %s" % (command, text)) from None


def ensure_ipv6() -> None:
    """Load the ipv6 module where it is one and not loaded (as in user-mode Linux)."""
    if os.path.isdir(os.path.join(PROC_SYS, "net", "ipv6")):
        return
    try:
        ipvs_kmod.load("ipv6")
    except ipvs_kmod.KernelModuleError as error:
        raise VipError("IPv6 is not available in this kernel: %s" % error) from None
