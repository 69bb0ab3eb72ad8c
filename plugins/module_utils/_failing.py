# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every module of the collection fails: one way, without a traceback."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ansible.module_utils.basic import missing_required_lib

from .ipvs.errors import HaecsError


@contextmanager
def failing_cleanly(module: Any, **context: Any) -> Iterator[None]:
    """A HaecsError becomes ``module.fail_json`` with its result fields
    (message, option path, refused operation, rolled back) plus `context`.

    Anything else is a bug and propagates as Ansible shows it.
    """
    try:
        yield
    except HaecsError as error:
        fields = error.result()
        library = getattr(error, "library", None)
        if library:
            fields.update(msg=missing_required_lib(library), exception=str(error))
        module.fail_json(**context, **fields)
