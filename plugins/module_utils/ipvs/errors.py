# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one root of every error HAECS reports to a person.

Engine, module utilities and monitor errors all derive from `HaecsError`;
each keeps the built-in base it always had (ValueError for bad input,
OSError for the kernel's refusals), so nothing that caught those changes.
`result()` is what a module's failure carries: the message and, where
known, the option path, the refused operation and whether earlier changes
were undone.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


class HaecsError(Exception):
    """An error with the fields a result needs."""

    #: the option path the error is about (``services[0].port``), if any
    option: Optional[str] = None
    #: the operation the kernel refused, as an ipvsadm line, if any
    refused: Optional[str] = None
    #: whether changes made before the failure were undone, if any were made
    rolled_back: Optional[bool] = None

    def message(self) -> str:
        """The text shown to the user."""
        return str(self)

    def result(self) -> Dict[str, Any]:
        """Keyword arguments for ``AnsibleModule.fail_json``."""
        fields: Dict[str, Any] = {"msg": self.message()}
        for name in ("option", "refused", "rolled_back"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return fields
