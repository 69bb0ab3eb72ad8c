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

_SERVICES_KEY = re.compile(r"^services:[ ]*(?:#.*)?$", re.MULTILINE)
_FIRST_ITEM = re.compile(r"^( *)-(?: |$)", re.MULTILINE)
_NEUTRAL_LINES = re.compile(r"(?:[ ]*(?:#.*)?\n)*")  # blank or comment only
# Anchors, aliases, merge keys, tabs, and line breaks other than \n (YAML
# counts some that a cut at \n would not): `in` scans for each fast.
_DECLINE_TEXT = ("&", "*", "<<", "\t", "\r", "\x85", "\u2028", "\u2029")
_DECLINE_LINE = re.compile(r"^(?:---|\.\.\.|%)", re.MULTILINE)  # documents, directives
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
    if text.lstrip().startswith("{") or any(mark in text for mark in _DECLINE_TEXT):
        return None
    if _DECLINE_LINE.search(text):
        return None
    keys = list(_SERVICES_KEY.finditer(text))
    if len(keys) != 1:
        return None
    after_key = keys[0].end() + 1
    first = _FIRST_ITEM.search(text, after_key)
    if first is None or not _NEUTRAL_LINES.fullmatch(text, after_key, first.start()):
        return None
    indent = len(first.group(1))
    # The block ends at the first line written at column 0 that is not one of its items.
    end_pattern = r"^[^ #\n]" if indent else r"^(?!-(?: |$))[^ #\n]"
    ending = re.compile(end_pattern, re.MULTILINE).search(text, first.start())
    end = ending.start() if ending is not None else len(text)
    # The block is searched in place (pos, endpos), never copied out: a copy
    # of megabytes is page faults while no other thread runs.
    start = first.start()
    # A line less indented than the items, or at their indentation but not
    # an item, is not the plain shape.
    stray = r"^ {%d}(?:[^ #\n-]|-[^ \n])" % indent
    if indent > 1:
        stray += r"|^ {1,%d}[^ #\n]" % (indent - 1)
    if re.compile(stray, re.MULTILINE).search(text, start, end):
        return None
    item = re.compile(r"^ {%d}-(?: |$)" % indent, re.MULTILINE)
    starts = [found.start() for found in item.finditer(text, start, end)] + [end]
    head = text[: keys[0].start()] + PLACEHOLDER + text[end:]
    sections = [_source(_trimmed(text[a:b], indent)) for a, b in zip(starts, starts[1:])]
    return Sections(head, sections)


def _trimmed(section: str, indent: int) -> str:
    """The section without the comments and blank lines that end it, so that
    editing a comment between two services changes neither.  Only comments
    at most as indented as the items (never a block scalar's text), and blank
    lines only where there is no block scalar (`|+` keeps them as text)."""
    lines = section.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    keep_blank = "|" in section or ">" in section
    while len(lines) > 1:
        line = lines[-1]
        text = line.lstrip(" ")
        if not text and keep_blank:
            break
        if text and not (text.startswith("#") and len(line) - len(text) <= indent):
            break
        lines.pop()
    return "\n".join(lines) + "\n"


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
