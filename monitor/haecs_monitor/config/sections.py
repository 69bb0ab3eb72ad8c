"""Validated service sections, remembered by a digest of what was written.

A reload of a large configuration usually changes a few services, or none.
Each service section whose digest (of its text, or of its parsed data) and
context (the `global` section it was validated under) match the last load
is not parsed or validated again: the `ServiceConfig` the last load made
from it is returned as it is, so the daemon also sees by identity which
services did not change.  A YAML section is remembered by the digest of
its data as well (as JSON sections are): the same data written again in
the other format or another layout is then parsed but not validated again.
Only sections that validated without a problem are remembered, so a
section that had one is always read again and reported.  The memory holds
one load: each load replaces it.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from haecs_monitor.config.model import MonitorConfig, ServiceConfig

Digest = bytes
Key = tuple[Digest, Digest]  # a section's digest, its context's


def digest_of(text: str) -> Digest:
    """A short digest of `text`; equal digests mean equal text."""
    return digest_of_bytes(text.encode("utf-8", "surrogatepass"))


def digest_of_bytes(data: bytes) -> Digest:
    """A short digest of `data`; equal digests mean equal bytes."""
    return hashlib.blake2b(data, digest_size=16).digest()


def data_digest(data: object) -> Digest:
    """A digest of parsed data.  `repr` tells apart what validates differently
    (1, 1.0, True and "1"); equal data written in another key order only
    costs a second validation."""
    return digest_of("%s:%r" % (type(data).__name__, data))


class SectionMemory:
    """What the last load made of each section, and of the whole file."""

    def __init__(self) -> None:
        self._valid: dict[Key, ServiceConfig] = {}
        self._pending: dict[Key, ServiceConfig] = {}
        # A section remembered by its text and by its data: text key -> data key
        self._data_keys: dict[Key, Key] = {}
        self._pending_data_keys: dict[Key, Key] = {}
        self.file_digest: Optional[Digest] = None
        self.config: Optional[MonitorConfig] = None

    def recall(self, section: Digest, context: Digest) -> Optional[ServiceConfig]:
        """The service made from an identical section in the same context last
        time (kept for the next load, under its data's digest too)."""
        key = (section, context)
        found = self._valid.get(key)
        if found is not None:
            self._pending[key] = found
            data_key = self._data_keys.get(key)
            if data_key is not None:
                self._pending[data_key] = found
                self._pending_data_keys[key] = data_key
        return found

    def remember(
        self,
        section: Digest,
        context: Digest,
        service: ServiceConfig,
        data: Optional[Digest] = None,
    ) -> None:
        """`service` made from `section` in `context`; `data`: the digest of
        the section's data, when `section` is the digest of its text."""
        key = (section, context)
        self._pending[key] = service
        if data is not None and data != section:
            data_key = (data, context)
            self._pending[data_key] = service
            self._pending_data_keys[key] = data_key

    def loaded(self, file_digest: Optional[Digest], config: MonitorConfig) -> None:
        """A load succeeded: its sections replace the last load's."""
        self._valid, self._pending = self._pending, {}
        self._data_keys, self._pending_data_keys = self._pending_data_keys, {}
        self.file_digest = file_digest
        self.config = config

    def failed(self) -> None:
        """A load was refused: forget what it read, keep the last good load."""
        self._pending = {}
        self._pending_data_keys = {}

    def adopt(self, other: SectionMemory) -> None:
        """Take over what `other` remembers (a load done in another process)."""
        self._valid, self._pending = other._valid, other._pending
        self._data_keys, self._pending_data_keys = other._data_keys, other._pending_data_keys
        self.file_digest, self.config = other.file_digest, other.config

    def __len__(self) -> int:
        return len(self._valid)


def checks_unchanged(old: MonitorConfig, new: MonitorConfig) -> bool:
    """Whether `new` has the same checks as `old`, in the same order (then
    what is derived from `unique_checks()`, such as their names, holds)."""
    if len(old.services) != len(new.services):
        return False
    for before, after in zip(old.services, new.services):
        if after is before:
            continue
        if after.key != before.key or len(after.real_servers) != len(before.real_servers):
            return False
        for was, now in zip(before.real_servers, after.real_servers):
            if now.checks != was.checks:
                return False
    return True
