"""Cut a YAML configuration into its service sections without parsing it.

Parsing YAML is most of the cost of loading a large configuration, and a
reload usually changes a few services.  When the file has the plain shape
the monitor role and people write (a top-level ``services:`` block
sequence), each ``- `` item at the sequence's indentation is one section;
a section is parsed on its own only when its text is new (load.py).

Anything that could make one section depend on another, or make the cut
uncertain, declines: anchors, aliases and merge keys (``&``, ``*``, ``<<``
anywhere), several documents or directives, tabs, a services block that is
not a block sequence.  A cut in the wrong place cannot parse (a quoted or
flow value split in two is unterminated), and then the whole file is read
the ordinary way (`Unsplittable`), so its errors name the right lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from haecs_monitor.config.sections import Digest, digest_of
from haecs_monitor.config.yamlfile import YAMLProblem, load_yaml
from haecs_monitor.errors import HaecsError

# A service section to validate: its digest, and how to get its data.
SectionSource = tuple[Digest, Callable[[], object]]

_SERVICES_KEY = re.compile(r"services:[ ]*(#.*)?\n?")
_ITEM = re.compile(r"( *)-(?: |\n|$)")
_NEUTRAL = re.compile(r"[ ]*(#.*)?\n?")  # blank or comment only
# Line breaks other than \n too: YAML counts some that str.split would not.
_DECLINE = re.compile(r"[&*\t\r\x85\u2028\u2029]|<<|^(---|\.\.\.|%)", re.MULTILINE)
# The head's stand-in for the services block (it keeps the key's place).
PLACEHOLDER = "services: []\n"


class Unsplittable(HaecsError):
    """This file cannot be cut into sections safely: read it whole."""


@dataclass(frozen=True)
class Sections:
    head: str  # the file without its services block
    services: list[SectionSource]


def split_services(text: str) -> Optional[Sections]:
    """The head and the service sections of `text`, or None when it does not
    have the plain shape (then it is read whole)."""
    if text.lstrip().startswith("{") or _DECLINE.search(text):
        return None
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    starts = [index for index, line in enumerate(lines) if _SERVICES_KEY.fullmatch(line)]
    if len(starts) != 1:
        return None
    key = starts[0]
    first = next((i for i in range(key + 1, len(lines)) if not _NEUTRAL.fullmatch(lines[i])), None)
    if first is None:
        return None
    opening = _ITEM.match(lines[first])
    if opening is None:
        return None
    indent = len(opening.group(1))
    items: list[list[str]] = []
    end = len(lines)
    for index in range(first, len(lines)):
        line = lines[index]
        if _NEUTRAL.fullmatch(line):
            items[-1].append(line)
            continue
        depth = len(line) - len(line.lstrip(" "))
        if depth == indent and _ITEM.match(line):
            items.append([line])
        elif depth > indent:
            items[-1].append(line)
        elif depth == 0:
            end = index
            break
        else:
            return None  # less indented than the items, inside the block
    head = "".join(lines[:key]) + PLACEHOLDER + "".join(lines[end:])
    return Sections(head, [_source("".join(item)) for item in items])


def _source(text: str) -> SectionSource:
    def parse() -> object:
        try:
            found = load_yaml(text, "services")
        except YAMLProblem:
            raise Unsplittable() from None
        if not isinstance(found, list) or len(found) != 1:
            raise Unsplittable()
        return found[0]

    return digest_of("yaml section\n" + text), parse
