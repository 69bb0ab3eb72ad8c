"""A config written as JSON (what the monitor role renders) takes the fast path."""

from __future__ import annotations

import json

import pytest
from haecs_monitor.config.yamlfile import YAMLProblem, load_yaml

DOCUMENT = {
    "global": {"name": "x"},
    "services": [{"address": "192.0.2.1", "port": 80, "real_servers": []}],
}


def test_json_and_yaml_read_alike() -> None:
    as_json = json.dumps(DOCUMENT)
    assert load_yaml(as_json, "c.json") == DOCUMENT
    assert (
        load_yaml(
            "global: {name: x}\nservices:\n- {address: 192.0.2.1, port: 80, real_servers: []}\n",
            "c.yml",
        )
        == DOCUMENT
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1,\n "a": 2}', "c.json: line 2, column 2: found duplicate key 'a'"),
        ('{"a": [1,}', "c.json: line 1"),
    ],
)
def test_json_problems_are_reported_by_the_yaml_parser_with_lines(text: str, message: str) -> None:
    with pytest.raises(YAMLProblem) as caught:
        load_yaml(text, "c.json")
    assert str(caught.value).startswith(message)


def test_non_json_constants_are_read_as_yaml() -> None:
    assert load_yaml('{"a": NaN}', "c") == {"a": "NaN"}
