"""The API of a running monitor (on a fake kernel) against its OpenAPI
document: a fixed set of requests covering every operation, then a
hypothesis fuzz run (no 5xx, every answer as documented, no table change)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import api_contract
import pytest
from haecs_monitor.control import api
from haecs_monitor.runtime import daemon
from hypothesis import HealthCheck, given, settings
from monitor_fakes import FakeEngine
from test_daemon import Harness, config_dict, until


@pytest.fixture
def harness(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(str(tmp_path), FakeEngine(), monkeypatch)


def test_the_document_is_openapi_and_every_ref_resolves() -> None:
    document = api_contract.DOCUMENT
    assert document["openapi"].startswith("3.1")
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node: Any = document
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
    routes = Path(api.__file__).read_text().split("Routes::")[1]
    for path in ("/status", "/events", "/metrics", "/reload", "/openapi.json"):
        assert path in routes and path in document["paths"], path


KNOWN = [
    ("GET", "/", b""),
    ("HEAD", "/status", b""),
    ("GET", "/openapi.json", b""),
    ("GET", "/status", b""),
    ("GET", "/events?limit=0", b""),
    ("GET", "/events?limit=-1", b""),
    ("GET", "/metrics", b""),
    ("POST", "/reload", b""),
    ("POST", "/servers/*/10.0.2.1:80/drain", b""),
    ("POST", "/servers/tcp:10.0.0.1:80/10.0.2.1:80/enable", b""),
    ("POST", "/servers/*/10.0.2.1:80/check", b""),
    ("POST", "/servers/*/10.9.9.9:80/check", b""),
    ("POST", "/servers/nope/10.0.2.1:80/drain", b""),
    ("GET", "/servers/*/10.0.2.1:80/drain", b""),
    ("PUT", "/status", b""),
    ("GET", "/nothing", b""),
]


def test_every_operation_answers_as_documented(harness: Harness) -> None:
    harness.write(config_dict(harness.tmp))
    problems: list[str] = []
    seen: set[int] = set()

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        loop = asyncio.get_running_loop()
        path = monitor.config.settings.control_socket
        for method, target, body in KNOWN:
            status, ctype, answer = await loop.run_in_executor(
                None, api_contract.send, method, target, body, path
            )
            seen.add(status)
            problems.extend(api_contract.validate(method, target, status, ctype, answer))

    assert harness.run(scenario) == 0
    assert problems == []
    assert {200, 400, 404, 405, 422} - seen == {422}  # a rejected reload is in test_daemon


# The monitor's own jitter uses `random` while hypothesis generates requests.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_fuzzed_requests_never_fail_the_contract_nor_touch_the_table(harness: Harness) -> None:
    harness.write(config_dict(harness.tmp))
    problems: list[str] = []
    tables: list[Any] = []

    async def scenario(monitor: daemon.Monitor) -> None:
        await until(lambda: harness.weights() == {"10.0.2.1": 1, "10.0.2.2": 2}, "both up")
        loop = asyncio.get_running_loop()
        path = monitor.config.settings.control_socket
        before = dict(harness.engine.table)

        # CI runs a fixed sample (a red CI must be reproducible); by hand it explores.
        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=bool(os.environ.get("CI")),
        )
        @given(api_contract.fuzz_requests())
        def one(request: tuple[str, str, bytes]) -> None:
            method, target, body = request
            status, ctype, answer = api_contract.send(method, target, body, unix=path)
            problems.extend(api_contract.validate(method, target, status, ctype, answer))

        await loop.run_in_executor(None, one)
        tables.extend([before, dict(harness.engine.table)])

    assert harness.run(scenario) == 0
    assert problems == [], problems[:5]
    assert tables[0] == tables[1]
