# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip.

ansible-test fetches get-pip.py from a host these machines cannot reach, but
it first looks in its cache (~/.ansible/test/cache/get_pip_<version>.py), and
`make sanity` copies this file there.  Like get-pip.py it is run as a script
with pip's options and the packages to install (for example pip==24.2): it
bootstraps pip from the interpreter's own ensurepip (no network), then lets
that pip install the packages from the usual package index.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main() -> int:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    # ensurepip disables pip's configuration in os.environ (PIP_CONFIG_FILE
    # set to /dev/null, PIP_* removed): the install below needs it back
    # (certificates, index settings of the machine).
    env = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env)


if __name__ == "__main__":
    sys.exit(main())
