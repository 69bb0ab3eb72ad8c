"""The monitor's API against its OpenAPI document: shared by the unit tests
(a monitor on a fake kernel) and the kernel tests (a real monitor).

`validate(method, path, status, body)` checks one answer against the
document; `fuzz_requests()` is a hypothesis strategy of requests, valid and
not, that never name an existing real server, so none of them may change the
kernel's table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote

from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

DOCUMENT_PATH = (
    Path(__file__).resolve().parents[2] / "monitor" / "haecs_monitor" / "control" / "openapi.json"
)
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text())
_REGISTRY = Registry().with_resource("doc", DRAFT202012.create_resource(DOCUMENT))


def _template_regex(template: str) -> re.Pattern[str]:
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{"):
            parts.append("(?P<%s>[^/]+)" % segment[1:-1])
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$")


# Literal segments first, so /servers/{s}/{v}/check wins over .../{action}.
_TEMPLATES = sorted(DOCUMENT["paths"], key=lambda t: t.count("{"))


def operation(method: str, path: str) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """(template, operation object) of METHOD PATH, or (template, None) when
    the path is documented but not that method, or (None, None)."""
    # As the server reads a path: percent-decoded segments, empty ones dropped.
    segments = [unquote(part) for part in path.split("?", 1)[0].split("/") if part]
    bare = "/" + "/".join(segments)
    for template in _TEMPLATES:
        match = _template_regex(template).match(bare)
        if not match:
            continue
        item = DOCUMENT["paths"][template]
        action = match.groupdict().get("action")
        enum = None
        for parameter in item.get("post", {}).get("parameters", []):
            if parameter["name"] == "action":
                enum = parameter["schema"]["enum"]
        if action is not None and enum is not None and action not in enum:
            continue
        wanted = "get" if method == "HEAD" else method.lower()
        return template, item.get(wanted)
    return None, None


def validate(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """Problems of one answer against the document (empty when it conforms)."""
    template, op = operation(method, path)
    if status >= 500:
        return ["%s %s: %d" % (method, path, status)]
    schema: dict[str, Any]
    if op is None:
        # Not a documented operation: an Error, 404 (no such path) or 405.
        allowed = {400, 401, 408, 413, 431, 503} | ({404, 405} if template is None else {405})
        if status not in allowed:
            return ["%s %s: %d for an undocumented operation" % (method, path, status)]
        schema = {"$ref": "doc#/components/schemas/Error"}
    else:
        response = op["responses"].get(str(status))
        if response is None:
            return ["%s %s: status %d is not documented" % (method, path, status)]
        if "content" not in response:
            return []
        media = next(iter(response["content"]))
        if content_type.split(";")[0] != media.split(";")[0]:
            return [
                "%s %s: %d with %s, documented %s" % (method, path, status, content_type, media)
            ]
        if not media.startswith("application/json"):
            return []
        schema = _qualified(response["content"][media]["schema"])
    if method == "HEAD":
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return ["%s %s: %d answer is not JSON" % (method, path, status)]
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    return [
        "%s %s: %d: %s at %s" % (method, path, status, error.message, list(error.absolute_path))
        for error in validator.iter_errors(data)
    ]


def _qualified(schema: dict[str, Any]) -> dict[str, Any]:
    """Refs into the document ("#/components/...") as registry refs ("doc#/...")."""
    text = json.dumps(schema).replace('"$ref": "#/', '"$ref": "doc#/')
    return json.loads(text)  # type: ignore[no-any-return]


_SEGMENT = st.one_of(
    st.sampled_from(["status", "events", "metrics", "reload", "servers", "openapi.json", "", "x"]),
    st.text(alphabet="abc:%*[]-._09", max_size=12),
)
_SERVICE = st.sampled_from(
    ["*", "tcp:10.0.0.1:80", "10.0.0.1:80", "udp:[2001:db8::1]:53", "fwmark:42", "nope", "all"]
)
# Real servers that are never configured: an admin request may not change anything.
_UNKNOWN_SERVER = st.sampled_from(
    ["10.9.9.9:80", "[2001:db8::9]:80", "10.0.0.1", "x", "10.1.1.2:99"]
)
_ACTION = st.sampled_from(["drain", "disable", "enable", "check", "bogus", ""])
_QUERY = st.sampled_from(
    [
        "",
        "?since=1",
        "?limit=0",
        "?limit=-1",
        "?since=x",
        "?limit=%D9%A3",
        "?limit=2&since=0",
        "?a=b",
    ]
)


@st.composite
def fuzz_requests(draw: Any) -> tuple[str, str, bytes]:
    """(method, path with query, body)."""
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        path = "/" + "/".join(draw(st.lists(_SEGMENT, max_size=4)))
    elif kind == 1:
        path = "/servers/%s/%s/%s" % (draw(_SERVICE), draw(_UNKNOWN_SERVER), draw(_ACTION))
    else:
        path = draw(st.sampled_from(["/status", "/events", "/metrics", "/openapi.json", "/"]))
    path = re.sub("/+", "/", path) or "/"
    body = draw(st.one_of(st.just(b""), st.binary(max_size=64), st.just(b'{"x": [1, {}]}')))
    return method, path + draw(_QUERY), body


def send(
    method: str,
    path: str,
    body: bytes = b"",
    unix: Optional[str] = None,
    tcp: Optional[tuple[str, int]] = None,
    token: Optional[str] = None,
) -> tuple[int, str, bytes]:
    """One raw request; (status, content type, body)."""
    import socket

    head = ["%s %s HTTP/1.1" % (method, path), "Host: haecs", "Connection: close"]
    if token is not None:
        head.append("Authorization: Bearer %s" % token)
    if body or method in ("POST", "PUT"):
        head.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    if unix is not None:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(30)
        sock.connect(unix)
    else:
        assert tcp is not None
        sock = socket.create_connection(tcp, 30)
    with sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head_bytes, _sep, answer = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ")[1]), headers.get("Content-Type", ""), answer
