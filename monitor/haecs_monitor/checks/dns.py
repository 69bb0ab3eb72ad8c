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

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from haecs_monitor.checks.base import CheckResult, down, os_error, timed_out, up, within
from haecs_monitor.config.checks import normalize_answer
from haecs_monitor.config.model import CheckSpec


async def check(spec: CheckSpec, address: str, port: int) -> CheckResult:
    name = spec.text("query") or "."
    qtype = spec.text("qtype") or "A"
    started = asyncio.get_running_loop().time()
    try:
        query = dns.message.make_query(name, qtype)
        if spec.text("protocol") == "tcp":
            ask = dns.asyncquery.tcp(query, address, timeout=spec.timeout, port=port)
        else:
            ask = dns.asyncquery.udp(query, address, timeout=spec.timeout, port=port)
        reply = await within(ask, spec.timeout)
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
