# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the cluster's inventory model into what each host needs.

The roles use them; their documentation is in the .yml files beside this one.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.errors import AnsibleFilterError

from ansible_collections.haecs.lvs.plugins.module_utils import _cluster
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.errors import HaecsError


def _reported(function: Callable[..., Any]) -> Callable[..., Any]:
    def filtered(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except HaecsError as error:
            raise AnsibleFilterError(str(error)) from None

    filtered.__name__ = function.__name__
    filtered.__doc__ = function.__doc__
    return filtered


class FilterModule:
    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "cluster_table": _reported(_cluster.cluster_table),
            "director_vips": _reported(_cluster.director_vips),
            "real_server_vips": _reported(_cluster.real_server_vips),
            "ipvsadm_rules": _reported(_cluster.ipvsadm_rules),
        }
