#!/usr/bin/env bash
# Host test of the haecs.lvs.netns connection: netns.yml runs commands,
# modules (setup), a copy and a fetch through it in two namespaces, and
# checks that they saw each namespace's links and not the controller's; a
# bad, missing or stale namespace name fails with a message that names
# haecs_netns and the rule.
#
#   tests/integration/targets/connection_netns/runme.sh [-v...]
#
# As root (ip netns).  Runs in a mount namespace of its own with a tmpfs on
# /run/netns: the namespaces it makes are never seen by the host, cannot
# clash with anyone else's, and go when it ends, even when it is killed (the
# trap also deletes them).  The controller's own network namespace is only
# read.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)

if [ "${HAECS_NETNS_TEST_MOUNTS:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "connection_netns: needs root (ip netns)" >&2; exit 2; }
    exec env HAECS_NETNS_TEST_MOUNTS=1 unshare --mount --propagation private -- \
        bash "$(readlink -f "$0")" "$@"
fi

mkdir -p /run/netns
mount -t tmpfs -o mode=755 haecs-netns-test /run/netns

scratch=$(mktemp -d /tmp/haecs-netns.XXXXXX)
namespaces=(haecs_a "odd name'\$(exit 3)")
cleanup() {
    for ns in "${namespaces[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    umount -l /run/netns 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# The collection through the link `make collection` makes; ansible's scratch
# files in ours; modules run by the controller's own Python (inventory.yml).
[ -e "$ROOT/build/collections/ansible_collections/haecs/lvs" ] ||
    { echo "connection_netns: run 'make collection' first" >&2; exit 2; }
export ANSIBLE_COLLECTIONS_PATH=$ROOT/build/collections \
    ANSIBLE_LOCAL_TEMP=$scratch/local ANSIBLE_REMOTE_TEMP=$scratch/remote \
    ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 PYTHONDONTWRITEBYTECODE=1

# Two namespaces, each with a veth pair of its own (both ends inside: the
# controller's namespace gets no link) and an address.
add_namespace() { # NAME LINK0 LINK1
    ip netns add "$1"
    ip -n "$1" link add "$2" type veth peer name "$3"
    ip -n "$1" addr add 192.0.2.1/24 dev "$2"
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
    ip -n "$1" link set "$3" up
}
add_namespace "${namespaces[0]}" nv0 nv1
add_namespace "${namespaces[1]}" odd0 odd1
# A name left in /run/netns with no namespace bound to it.
touch /run/netns/haecs_stale

start=$SECONDS
"$ROOT/.venv/bin/ansible-playbook" -i "$HERE/inventory.yml" -e "scratch=$scratch" "$@" "$HERE/netns.yml"
echo "connection_netns: netns.yml passed in $((SECONDS - start)) s"
