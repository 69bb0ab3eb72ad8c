# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load the IPVS kernel modules a table needs, before the first change.

The kernel would try to load a missing scheduler itself, but only fails
midway with ENOENT.  Loading up front turns that into a clear error that
names the module, while nothing has been changed yet.
"""

from __future__ import annotations

import os

from .errors import HaecsError

TYPE_CHECKING = False  # typing only for mypy: see the package's docstring
if TYPE_CHECKING:
    from typing import Iterable, List

MODULE_DIR = "/sys/module"


class KernelModuleError(HaecsError, RuntimeError):
    """A kernel module could not be loaded."""


def is_loaded(module: str) -> bool:
    return os.path.isdir(os.path.join(MODULE_DIR, module))


def is_builtin(module: str) -> bool:
    release = os.uname().release
    try:
        with open("/lib/modules/%s/modules.builtin" % release) as builtin:
            return any(line.rstrip().endswith("/%s.ko" % module) for line in builtin)
    except OSError:
        return False


def load(module: str) -> None:
    """Load `module` unless it is there already; KernelModuleError if that fails."""
    if is_loaded(module) or is_builtin(module):
        return
    import shutil
    import subprocess

    modprobe = shutil.which("modprobe") or next(
        (path for path in ("/usr/sbin/modprobe", "/sbin/modprobe") if os.path.exists(path)), None
    )
    if modprobe is None:
        raise KernelModuleError(
            "kernel module %s is not loaded and modprobe was not found" % module
        )
    result = subprocess.run([modprobe, module], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or "exit status %d" % result.returncode
        raise KernelModuleError("cannot load kernel module %s: %s" % (module, detail))


def modules_for(schedulers: Iterable[str], persistence_engines: Iterable[str] = ()) -> List[str]:
    """Kernel modules for schedulers and persistence engines, in a stable order."""
    names = sorted({"ip_vs_%s" % name for name in schedulers})
    names += sorted({"ip_vs_pe_%s" % name for name in persistence_engines})
    return names
