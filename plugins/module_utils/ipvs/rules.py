# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read an `ipvsadm -Sn` / `ipvsadm-restore` rules file as ipvs_table services.

The file a director restores at boot (`ipvsadm-restore < /etc/ipvsadm.rules`)
is also what `ipvs_table src=` converges to, so one rendered file serves
both.  Lines are `-A` (service) and `-a` (real server) commands as
`ipvsadm -Sn` prints them, plus `-x`/`-y` thresholds; blank lines and
`#` comments are skipped.  The result feeds `ipvs_table_params.parse_table`;
`ValidationError`s name the file and line.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from .params import ValidationError

_SERVICE_OPTIONS = {"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp",
                    "--sctp-service": "sctp"}  # fmt: skip
_FORWARDING = {"-g": "route", "--gatewaying": "route", "-m": "masq", "--masquerading": "masq",
               "-i": "tunnel", "--ipip": "tunnel"}  # fmt: skip
_CHECKSUM = {"--tun-nocsum": "none", "--tun-csum": "csum", "--tun-remcsum": "remcsum"}
_INTEGER = re.compile(r"^[0-9]{1,20}$")
_PATH = re.compile(r"^services\[(\d+)\](?:\.real_servers\[(\d+)\])?\.?(.*)$")


def _endpoint(text: str, where: str, port_required: bool = True) -> Tuple[str, Optional[int]]:
    """'10.0.0.1:80' or '[2001:db8::1]:80' -> (address, port)."""
    if text.startswith("["):
        address, _sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValidationError(where, "bad address %r" % text)
    elif text.count(":") == 1:
        address, _sep, port_text = text.partition(":")
    else:
        address, port_text = text, ""
    if not port_text:
        if port_required:
            raise ValidationError(where, "needs ADDRESS:PORT, got %r" % text)
        return address, None
    if not _INTEGER.match(port_text):
        raise ValidationError(where, "bad port in %r" % text)
    return address, int(port_text)


class _Line:
    """The words of one line, consumed option by option."""

    def __init__(self, words: List[str], where: str) -> None:
        self.words = words
        self.where = where
        self.index = 1

    def take(self, option: str) -> str:
        if self.index >= len(self.words):
            raise ValidationError(self.where, "%s needs a value" % option)
        value = self.words[self.index]
        self.index += 1
        return value

    def number(self, option: str) -> int:
        value = self.take(option)
        if not _INTEGER.match(value):
            raise ValidationError(self.where, "%s needs a number, got %r" % (option, value))
        return int(value)


def _service_key(line: _Line, option: str) -> Dict[str, Any]:
    if option in ("-f", "--fwmark-service"):
        return {"fwmark": line.number(option), "family": "ipv4"}
    address, port = _endpoint(line.take(option), line.where)
    return {"protocol": _SERVICE_OPTIONS[option], "address": address, "port": port}


def _identity(key: Dict[str, Any]) -> Tuple[Any, ...]:
    return tuple(sorted((k, str(v)) for k, v in key.items()))


def parse_rules(text: str, name: str = "rules") -> Tuple[List[Dict[str, Any]], List[int]]:
    """The services of a rules file as ipvs_table options, and the line of
    each service and real server (in order: service, its servers, next...).

    Raises ValidationError naming `name:LINE`.
    """
    services: List[Dict[str, Any]] = []
    by_key: Dict[Tuple[Any, ...], int] = {}
    lines: Dict[Tuple[int, int], int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        where = "%s:%d" % (name, number)
        command = words[0]
        if command not in ("-A", "--add-service", "-a", "--add-server"):
            raise ValidationError(where, "only -A and -a lines are allowed, got %r" % command)
        line = _Line(words, where)
        key: Optional[Dict[str, Any]] = None
        entry: Dict[str, Any] = {}
        while line.index < len(words):
            option = line.take("")
            if option in _SERVICE_OPTIONS or option in ("-f", "--fwmark-service"):
                key = _service_key(line, option)
            elif option in ("-6", "--ipv6"):
                entry["family"] = "ipv6"
            elif command in ("-A", "--add-service"):
                _service_option(line, option, entry)
            else:
                _server_option(line, option, entry)
        if key is None:
            raise ValidationError(where, "names no service (-t, -u, --sctp-service or -f)")
        if "fwmark" in key and entry.pop("family", None) == "ipv6":
            key["family"] = "ipv6"
        identity = _identity(key)
        if command in ("-A", "--add-service"):
            if identity in by_key:
                raise ValidationError(where, "adds a service twice")
            service = dict(key, **entry)
            service["real_servers"] = []
            by_key[identity] = len(services)
            lines[len(services), -1] = number
            services.append(service)
        else:
            if "address" not in entry:
                raise ValidationError(where, "needs -r ADDRESS[:PORT]")
            index = by_key.get(identity, -1)
            if index < 0:
                raise ValidationError(where, "real server of a service not added above (-A)")
            owner = services[index]
            lines[index, len(owner["real_servers"])] = number
            owner["real_servers"].append(entry)
    order = [lines[key] for key in sorted(lines)]
    return services, order


def _service_option(line: _Line, option: str, entry: Dict[str, Any]) -> None:
    if option in ("-s", "--scheduler"):
        entry["scheduler"] = line.take(option)
    elif option in ("-p", "--persistent"):
        entry["persistence_timeout"] = line.number(option)
    elif option in ("-M", "--netmask"):
        mask = line.take(option)
        if "." in mask:
            entry["persistence_netmask"] = mask
        elif _INTEGER.match(mask):
            entry["persistence_prefix_length"] = int(mask)
        else:
            raise ValidationError(line.where, "-M needs a netmask or a prefix length")
    elif option == "--pe":
        entry["persistence_engine"] = line.take(option)
    elif option in ("-o", "--ops"):
        entry["one_packet"] = True
    elif option in ("-b", "--sched-flags"):
        entry["scheduler_flags"] = line.take(option).split(",")
    else:
        raise ValidationError(line.where, "unknown service option %r" % option)


def _server_option(line: _Line, option: str, entry: Dict[str, Any]) -> None:
    if option in ("-r", "--real-server"):
        address, port = _endpoint(line.take(option), line.where, port_required=False)
        entry["address"] = address
        if port is not None:
            entry["port"] = port
    elif option in _FORWARDING:
        entry["forwarding"] = _FORWARDING[option]
    elif option in ("-w", "--weight"):
        entry["weight"] = line.number(option)
    elif option in ("-x", "--u-threshold"):
        entry["upper_threshold"] = line.number(option)
    elif option in ("-y", "--l-threshold"):
        entry["lower_threshold"] = line.number(option)
    elif option == "--tun-type":
        entry["tunnel_type"] = line.take(option)
    elif option == "--tun-port":
        entry["tunnel_port"] = line.number(option)
    elif option in _CHECKSUM:
        entry["tunnel_checksum"] = _CHECKSUM[option]
    else:
        raise ValidationError(line.where, "unknown real server option %r" % option)


def locate(
    error: ValidationError, name: str, order: List[int], services: List[Dict[str, Any]]
) -> ValidationError:
    """`services[2].real_servers[0].weight: ...` as `NAME:LINE: weight: ...`."""
    match = _PATH.match(error.field)
    if match is None:
        return error
    service = int(match.group(1))
    server = int(match.group(2)) if match.group(2) is not None else -1
    position = 0
    for index in range(service):
        position += 1 + len(services[index]["real_servers"])
    position += server + 1
    field = "%s:%d" % (name, order[position]) if position < len(order) else name
    rest = match.group(3)
    return ValidationError(field, "%s: %s" % (rest, error.rule) if rest else error.rule)
