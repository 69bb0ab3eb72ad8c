"""DNS check: ask the server one question (dnspython), judge rcode and answers.

Up when the reply's rcode is NOERROR and the answer section holds records of
the asked type; with `expect`, every listed answer must be among them (other
answers may be there too, so round-robin record sets still pass).  Answers
are compared as text, case-insensitively and without the final dot; A and
AAAA answers as addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Optional

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from haecs_monitor.checks.base import CheckResult, CheckType, down, os_error, timed_out, up, within
from haecs_monitor.config.model import CheckSpec, ParamValue
from haecs_monitor.config.reader import Reader, as_list, item, parse_address, shown


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    name = spec.text("query") or "."
    qtype = spec.text("qtype") or "A"
    started = asyncio.get_running_loop().time()
    try:
        query = dns.message.make_query(name, qtype)
        if spec.text("protocol") == "tcp":
            ask = dns.asyncquery.tcp(query, address, timeout=spec.timing.timeout, port=port)
        else:
            ask = dns.asyncquery.udp(query, address, timeout=spec.timing.timeout, port=port)
        reply = await within(ask, spec.timing.timeout)
    except (asyncio.TimeoutError, dns.exception.Timeout):
        return timed_out(spec, started)
    except OSError as error:
        return os_error("query", error)
    except (dns.exception.DNSException, ValueError, EOFError) as error:
        return down("query: %s" % (str(error) or error.__class__.__name__))
    return judge(spec, reply)


def judge(spec: CheckSpec, reply: dns.message.Message) -> CheckResult:
    rcode = reply.rcode()
    if rcode != dns.rcode.NOERROR:
        return down("rcode %s" % dns.rcode.to_text(rcode))
    wanted = dns.rdatatype.from_text(spec.text("qtype") or "A")
    answers = {
        _normalize(rdata.to_text(), wanted)
        for rrset in reply.answer
        if rrset.rdtype == wanted
        for rdata in rrset
    }
    if not answers:
        return down("no %s answer" % dns.rdatatype.to_text(wanted))
    missing = [answer for answer in spec.texts("expect") if answer not in answers]
    if missing:
        return down(
            "answer lacks %s (got %s)" % (", ".join(missing[:3]), ", ".join(sorted(answers)[:3]))
        )
    return up("%d %s answer(s)" % (len(answers), dns.rdatatype.to_text(wanted)))


def _normalize(text: str, rdtype: int) -> str:
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            return ipaddress.ip_address(text).compressed
        except ValueError:
            return text
    return normalize_answer(text)


# ---------------------------------------------------------------- options


def _dns(reader: Reader, script_user: str) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {"qtype": "A", "protocol": "udp"}
    if reader.require("query"):
        query = reader.text("query")
        if query is not None:
            try:
                params["query"] = dns.name.from_text(query).to_text()
            except (dns.exception.DNSException, ValueError, UnicodeError) as error:
                reader.fail("query", "is not a valid DNS name: %s" % error)
    qtype_text = reader.text("qtype")
    if qtype_text is not None:
        try:
            params["qtype"] = dns.rdatatype.to_text(dns.rdatatype.from_text(qtype_text.upper()))
        except (dns.exception.DNSException, ValueError, UnicodeError):
            reader.fail(
                "qtype", "is not a DNS record type (A, AAAA, MX, ...), got %s" % shown(qtype_text)
            )
    protocol = reader.choice("protocol", ("udp", "tcp"))
    if protocol is not None:
        params["protocol"] = protocol
    expect = _expect_answers(reader, str(params["qtype"]))
    if expect is not None:
        params["expect"] = expect
    return params


def _expect_answers(reader: Reader, qtype: str) -> Optional[tuple[ParamValue, ...]]:
    raw = reader.data.get("expect")
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    entries = as_list(raw, reader.at("expect"), reader.problems)
    if entries is None:
        return None
    answers: list[str] = []
    for index, entry in enumerate(entries):
        path = item(reader.at("expect"), index)
        if not isinstance(entry, str) or not entry.strip():
            reader.problems.add(path, "must be a non-empty string, got %s" % shown(entry))
            continue
        if qtype in ("A", "AAAA"):
            address = parse_address(entry, path, reader.problems, allow_unspecified=True)
            if address is not None:
                answers.append(address)
        else:
            answers.append(normalize_answer(entry))
    if not answers:
        reader.fail("expect", "must list at least one answer (omit it to accept any answer)")
        return None
    return tuple(sorted(set(answers)))


def normalize_answer(text: str) -> str:
    """How answers are compared: case-insensitive, without the final dot."""
    return " ".join(text.split()).lower().rstrip(".")


def _detail(spec: CheckSpec) -> str:
    return spec.text("query") or ""


DNS = CheckType("dns", ("query", "qtype", "protocol", "expect"), _dns, check, _detail)
