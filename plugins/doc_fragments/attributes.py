# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every haecs.lvs module shares; a module declares only its
support, and a description where it says more than these."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without changing anything.
  diff_mode:
    description: Returns the state before and after in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""
