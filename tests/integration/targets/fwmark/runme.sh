#!/usr/bin/env bash
# Integration test of haecs.lvs.fwmark, always inside a FRESH network
# namespace (unshare -n): the host's own ruleset is never seen or touched.
#
#   tests/integration/targets/fwmark/runme.sh [-v...]
#
# Runs anywhere as root: on this host natively (its kernel has nf_tables for
# inet; no IPVS is needed for the rules), or through tests/integration/run
# in a test kernel.  When the kernel has no nf_tables for the inet family
# (the UML kernel), it proves instead that the module says so clearly and
# changes nothing (unsupported.yml).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
VENV=$ROOT/.venv

if [ "${HAECS_FWMARK_NETNS:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "fwmark: needs root (unshare -n, nft)" >&2; exit 2; }
    exec env HAECS_FWMARK_NETNS=1 unshare --net -- bash "$(readlink -f "$0")" "$@"
fi

# Standalone defaults (tests/integration/run sets these already).
scratch=$(mktemp -d /tmp/haecs-fwmark.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$ROOT/build/collections}
export ANSIBLE_LOCAL_TEMP=${ANSIBLE_LOCAL_TEMP:-$scratch/local}
export ANSIBLE_REMOTE_TEMP=${ANSIBLE_REMOTE_TEMP:-$scratch/remote}
export ANSIBLE_PYTHON_INTERPRETER=${ANSIBLE_PYTHON_INTERPRETER:-$VENV/bin/python}
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 ANSIBLE_NOCOLOR=1
export ANSIBLE_RETRY_FILES_ENABLED=0 PYTHONDONTWRITEBYTECODE=1
export PATH=$VENV/bin:$PATH
link=$ROOT/build/collections/ansible_collections/haecs/lvs
[ -e "$link" ] || { mkdir -p "$(dirname "$link")" && ln -sfn ../../../.. "$link"; }

ip link set lo up
if nft add table inet haecs_probe 2>"$scratch/probe.err"; then
    nft delete table inet haecs_probe
    playbook=fwmark.yml
else
    echo "fwmark: this kernel has no nf_tables for inet ($(tr '\n' ' ' <"$scratch/probe.err")): checking the module's error instead"
    playbook=unsupported.yml
fi
start=$SECONDS
ansible-playbook -i localhost, -c local "$@" "$HERE/$playbook"
echo "fwmark: $playbook passed in $((SECONDS - start)) s ($(uname -r))"
