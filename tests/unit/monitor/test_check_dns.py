"""The dns check against a tiny responder built with dnspython's message API."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Callable, Optional

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from checkhelp import free_port, probe, spec

Answer = Callable[[dns.message.Message], Optional[dns.message.Message]]


def records(query: dns.message.Message) -> Optional[dns.message.Message]:
    reply = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text()
    if name == "www.example.test." and question.rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    elif name == "www.example.test." and question.rdtype == dns.rdatatype.AAAA:
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "AAAA", "2001:db8:0:0::1"))
    elif name == "alias.example.test.":
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "www.example.test."))
        reply.answer.append(dns.rrset.from_text("www.example.test.", 60, "IN", "A", "192.0.2.1"))
    elif name == "example.test." and question.rdtype == dns.rdatatype.MX:
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "MX", "10 Mail.Example.Test."))
    elif name == "silent.example.test.":
        return None
    elif name == "empty.example.test.":
        pass
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply


@pytest.fixture()
def udp_server() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            reply = records(dns.message.from_wire(data))
            if reply is not None:
                sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture()
def tcp_server() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _unused = listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(1)
                (length,) = struct.unpack("!H", conn.recv(2))
                reply = records(dns.message.from_wire(conn.recv(length)))
                if reply is not None:
                    wire = reply.to_wire()
                    conn.sendall(struct.pack("!H", len(wire)) + wire)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def dns_check(
    port: int,
    query: str,
    qtype: str = "A",
    protocol: str = "udp",
    expect: tuple[str, ...] = (),
    timeout: float = 1.0,
) -> object:
    params: dict[str, object] = {"query": query, "qtype": qtype, "protocol": protocol}
    if expect:
        params["expect"] = expect
    return probe(spec("dns", port, timeout=timeout, **params))  # type: ignore[arg-type]


def test_any_answer_is_up(udp_server: int) -> None:
    result = dns_check(udp_server, "www.example.test.")
    assert result.up and result.detail == "2 A answer(s)"  # type: ignore[attr-defined]


def test_expected_answers(udp_server: int) -> None:
    assert dns_check(udp_server, "www.example.test.", expect=("192.0.2.2",)).up  # type: ignore[attr-defined]
    assert dns_check(udp_server, "www.example.test.", expect=("192.0.2.1", "192.0.2.2")).up  # type: ignore[attr-defined]
    missing = dns_check(udp_server, "www.example.test.", expect=("192.0.2.9",))
    assert not missing.up and missing.detail.startswith("answer lacks 192.0.2.9")  # type: ignore[attr-defined]
    assert dns_check(udp_server, "www.example.test.", "AAAA", expect=("2001:db8::1",)).up  # type: ignore[attr-defined]
    assert dns_check(udp_server, "example.test.", "MX", expect=("10 mail.example.test",)).up  # type: ignore[attr-defined]


def test_cname_chain(udp_server: int) -> None:
    assert dns_check(udp_server, "alias.example.test.", expect=("192.0.2.1",)).up  # type: ignore[attr-defined]


def test_nxdomain_and_empty_answers_are_down(udp_server: int) -> None:
    nx = dns_check(udp_server, "nothing.example.test.")
    assert not nx.up and nx.detail == "rcode NXDOMAIN"  # type: ignore[attr-defined]
    empty = dns_check(udp_server, "empty.example.test.")
    assert not empty.up and empty.detail == "no A answer"  # type: ignore[attr-defined]


def test_no_reply_times_out(udp_server: int) -> None:
    result = dns_check(udp_server, "silent.example.test.", timeout=0.3)
    assert not result.up and result.detail == "timed out after 0.3s"  # type: ignore[attr-defined]


def test_tcp(tcp_server: int) -> None:
    assert dns_check(tcp_server, "www.example.test.", protocol="tcp", expect=("192.0.2.1",)).up  # type: ignore[attr-defined]


def test_tcp_refused() -> None:
    result = dns_check(free_port(), "www.example.test.", protocol="tcp")
    assert not result.up and result.detail == "query: Connection refused"  # type: ignore[attr-defined]


def test_udp_garbage_reply_is_down() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def answer() -> None:
        data, peer = sock.recvfrom(4096)
        sock.sendto(data[:2] + b"\x81\x80garbage", peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    result = dns_check(sock.getsockname()[1], "www.example.test.", timeout=0.5)
    thread.join()
    sock.close()
    assert not result.up  # type: ignore[attr-defined]


def test_runs_inside_an_existing_loop(udp_server: int) -> None:
    from haecs_monitor.checks import dns as dns_module

    async def twice() -> list[bool]:
        check = spec("dns", udp_server, query="www.example.test.", qtype="A", protocol="udp")
        results = await asyncio.gather(
            *(dns_module.check(check, "127.0.0.1", udp_server) for _unused in range(5))
        )
        return [result.up for result in results]

    assert asyncio.run(twice()) == [True] * 5
