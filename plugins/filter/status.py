# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A director's status as lines to read (playbooks/status.yml); documented in
director_status.yml beside this file."""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible_collections.haecs.lvs.plugins.module_utils._status import director_status


class FilterModule:
    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {"director_status": director_status}
