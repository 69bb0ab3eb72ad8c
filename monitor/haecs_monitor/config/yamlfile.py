"""Read YAML safely and strictly: plain data only, duplicate keys are errors.

PyYAML keeps the last of two equal keys without a word; in a health-check
config that silently drops a setting, so a duplicate is reported with its
line.  Syntax errors become one line with the file, line and column.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import yaml  # type: ignore[import-untyped]  # no stubs pinned (types-PyYAML)

from haecs_monitor.config.reader import shown
from haecs_monitor.errors import HaecsError

# The C parser (libyaml) when present: a large config loads ~10x faster.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YAMLProblem(HaecsError):
    """The text is not valid YAML (the message names the line)."""


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _unused in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: SafeConstructor reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found duplicate key %s" % shown(key),
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _where(mark: Any) -> str:
    return "line %d, column %d" % (mark.line + 1, mark.column + 1)


class _NotPlainJSON(HaecsError):
    """Let the YAML parser read it (and report any problem with its line)."""


def _unique_pairs(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _NotPlainJSON()
        result[key] = value
    return result


def _reject_constant(_name: str) -> Any:
    raise _NotPlainJSON()


def _load_json(text: str) -> object:
    """JSON is YAML: a generated config (the monitor role writes JSON) loads
    about 10x faster through the json module than through PyYAML."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _NotPlainJSON() from None


def _marked_problem(error: yaml.MarkedYAMLError, text: str, source: str) -> str:
    """Where the parser stopped and what it found; for a scanner or parser
    error also where the trouble starts (an unclosed quote, say, is found
    only at the end of the file) and that line's text."""
    problem = error.problem or error.context or "invalid YAML"
    mark = error.problem_mark or error.context_mark
    message = (
        "%s: %s: %s" % (source, _where(mark), problem) if mark else "%s: %s" % (source, problem)
    )
    start = error.context_mark
    syntax = isinstance(error, (yaml.scanner.ScannerError, yaml.parser.ParserError))
    if syntax and error.context and start is not None and (mark is None or start.line != mark.line):
        message += "; it starts at %s, %s" % (_where(start), error.context)
        lines = text.splitlines()
        if 0 <= start.line < len(lines) and lines[start.line].strip():
            message += ": %s" % lines[start.line].strip()[:120]
    return message


def load_yaml(text: str, source: str) -> object:
    """The document in `text` as plain Python data; YAMLProblem when invalid."""
    if text.lstrip().startswith("{"):
        try:
            return _load_json(text)
        except _NotPlainJSON:
            pass
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        raise YAMLProblem(_marked_problem(error, text, source)) from None
    except yaml.YAMLError as error:
        raise YAMLProblem("%s: invalid YAML: %s" % (source, error)) from None
    except (ValueError, OverflowError, TypeError) as error:  # e.g. a date like 2024-13-45
        raise YAMLProblem("%s: invalid value: %s" % (source, error)) from None
    except RecursionError:
        raise YAMLProblem("%s: the document is nested too deeply" % source) from None
