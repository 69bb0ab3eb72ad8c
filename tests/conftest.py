"""For every test: the link that makes this checkout importable as
ansible_collections.haecs.lvs (pyproject's pytest pythonpath lists
build/collections; `make collection` makes the same link)."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = os.path.join(ROOT, "build", "collections", "ansible_collections", "haecs", "lvs")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink("../../../..", LINK)
