"""The monitor's errors: all under the collection's one root, `HaecsError`.

`NotFound` and `Ambiguous` are what the control API answers 404 and 409 for;
a built-in LookupError or ValueError from a bug is never mistaken for one.
"""

from __future__ import annotations

from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.errors import HaecsError

__all__ = ["Ambiguous", "HaecsError", "NotFound"]


class NotFound(HaecsError):
    """No such service, real server or action (API: 404)."""


class Ambiguous(HaecsError):
    """A name that matches several services (API: 409)."""
