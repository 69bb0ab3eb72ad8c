#!/usr/bin/env bash
# Traffic proof for haecs.lvs.fwmark: HTTP and HTTPS ports of one VIP,
# marked 42 by nftables, balanced by ONE persistent IPVS fwmark service.
#
#   tests/kernel/run --backend qemu -- tests/qemu/fwmark_traffic.sh
#
# Needs a kernel with IPVS *and* nf_tables for inet: the QEMU path's Debian
# kernel (UML's kernel has no inet nf_tables).  Everything happens in network
# namespaces this script creates, with addresses from 10.66.0.0/16:
#
#   client ns fwc  10.66.1.11-14 --veth-- director (root ns) 10.66.1.1, VIP 10.66.0.100
#   real server ns fwr1 10.66.11.2 --veth-- director 10.66.11.1
#   real server ns fwr2 10.66.12.2 --veth-- director 10.66.12.1
#
# The director is made by the haecs.lvs.director role from an inventory
# model with one fwmark service (fwmark_inventory.yml): its marks (through
# haecs.lvs.fwmark), the VIP, IP forwarding, the service (rr, persistence
# 300 s) and its two NAT (masq) real servers; a second run changes nothing.
# Each real server runs plain-HTTP servers on ports 80 and 443 that answer
# with its name.  Proven: every client lands on the same real server on
# both ports (persistence across the fwmark service), and the clients spread
# over both real servers.  Exits 0 when all of that holds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=$ROOT/.venv
VIP=10.66.0.100
CLIENTS=(10.66.1.11 10.66.1.12 10.66.1.13 10.66.1.14)
T0=${EPOCHREALTIME/./}

say() {
    local tenths=$(((${EPOCHREALTIME/./} - T0) / 100000))
    printf '[%4d.%d s] %s\n' $((tenths / 10)) $((tenths % 10)) "$*"
}
die() { echo "fwmark_traffic: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root inside a test kernel: tests/kernel/run --backend qemu -- $0"
modprobe ip_vs 2>/dev/null || true
[ -e /proc/net/ip_vs ] || die "no IPVS in this kernel ($(uname -r)); run: tests/kernel/run --backend qemu -- $0"
if ! (unshare --net nft add table inet haecs_probe) 2>/dev/null; then
    die "this kernel ($(uname -r)) has no nf_tables for inet; run: tests/kernel/run --backend qemu -- $0"
fi
[ -x "$VENV/bin/ansible-playbook" ] || die "no $VENV: run 'make venv collection' first"
for ns in fwc fwr1 fwr2; do
    ip netns list | grep -qw "$ns" && die "namespace $ns exists already (not a fresh kernel?)"
done
say "kernel $(uname -r), IPVS and inet nf_tables present"

scratch=$(mktemp -d /tmp/haecs-fwmark-traffic.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in fwc fwr1 fwr2; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

# ---- namespaces and links
ip netns add fwc
ip link add c-dir type veth peer name c-cli netns fwc
ip addr add 10.66.1.1/24 dev c-dir
ip link set c-dir up
ip -n fwc link set lo up
for c in "${CLIENTS[@]}"; do ip -n fwc addr add "$c/24" dev c-cli; done
ip -n fwc link set c-cli up
ip -n fwc route add default via 10.66.1.1
for i in 1 2; do
    ns=fwr$i
    ip netns add "$ns"
    ip link add "d-r$i" type veth peer name eth0 netns "$ns"
    ip addr add "10.66.1$i.1/24" dev "d-r$i"
    ip link set "d-r$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.66.1$i.2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "10.66.1$i.1"
    mkdir -p "$scratch/www$i"
    echo "rs$i" >"$scratch/www$i/index.html"
    for port in 80 443; do
        # busybox httpd starts in a blink even under TCG; python's http.server otherwise.
        if busybox httpd --help 2>&1 | grep -q -- '-f'; then
            ip netns exec "$ns" busybox httpd -f -p "$port" -h "$scratch/www$i" >"$scratch/http-$ns-$port.log" 2>&1 &
        else
            ip netns exec "$ns" python3 -m http.server "$port" --bind 0.0.0.0 \
                --directory "$scratch/www$i" >"$scratch/http-$ns-$port.log" 2>&1 &
        fi
        pids+=($!)
    done
done
say "namespaces fwc, fwr1, fwr2 and veth links up; HTTP servers starting"

# ---- director: marks, service, real servers through the collection
export HOME=$scratch/home ANSIBLE_LOCAL_TEMP=$scratch/ansible-local ANSIBLE_REMOTE_TEMP=$scratch/ansible-remote
export ANSIBLE_COLLECTIONS_PATH=$ROOT/build/collections ANSIBLE_NOCOLOR=1
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 PYTHONDONTWRITEBYTECODE=1
# Each process costs under TCG: modules go to the interpreter on stdin, no temporary files.
export ANSIBLE_PIPELINING=1
mkdir -p "$HOME"
link=$ROOT/build/collections/ansible_collections/haecs/lvs
[ -e "$link" ] || { mkdir -p "$(dirname "$link")" && ln -sfn ../../../.. "$link"; }
# play N's task results in LOG (N = 1 or 2), as the default callback prints them.
play_results() { awk -v n="$2" '/^PLAY \[/ { play++ } /^PLAY RECAP/ { play = 0 } play == n' "$1" | grep -E '^(ok|changed|failed|fatal): '; }
a0=$(date +%s)
"$VENV/bin/ansible-playbook" -i "$HERE/fwmark_inventory.yml" -e "ansible_python_interpreter=$VENV/bin/python" \
    "$HERE/fwmark_traffic.yml" >"$scratch/ansible.log" 2>&1 || { cat "$scratch/ansible.log"; die "ansible-playbook failed"; }
run1=$(play_results "$scratch/ansible.log" 1 || true)
run2=$(play_results "$scratch/ansible.log" 2 || true)
count() { awk -F: 'NF { n[$1]++ } END { for (k in n) printf "%s %d ", k, n[k] }' <<<"$1"; }
say "ansible-playbook (the director role, then again) done in $(($(date +%s) - a0)) s: run 1: $(count "$run1"); run 2: $(count "$run2")"
grep -q '^changed: ' <<<"$run1" || die "the first run changed nothing"
grep -q '^ok: ' <<<"$run2" || { cat "$scratch/ansible.log"; die "the second run did not run"; }
if grep -q '^changed: ' <<<"$run2"; then
    cat "$scratch/ansible.log"; die "the second run changed something"
fi
[ "$(sysctl -n net.ipv4.ip_forward)" = 1 ] || die "the role did not turn on IP forwarding (NAT)"
ip -j addr show dev c-dir | grep -q "\"$VIP\"" || die "the role did not put the VIP $VIP on c-dir"
echo "--- the boot file of the marks (nft -j -f at boot)"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' /etc/haecs/director-marks.json
echo "--- nft list table inet haecs"
nft list table inet haecs
echo "--- ipvsadm -Ln"
ipvsadm -Ln

# ---- wait for the 4 HTTP servers (straight to each real server, not via the VIP)
for i in 1 2; do
    for port in 80 443; do
        for _ in $(seq 1 300); do
            curl -s -m 2 "http://10.66.1$i.2:$port/" >/dev/null 2>&1 && break
            sleep 0.2
        done
        [ "$(curl -s -m 5 "http://10.66.1$i.2:$port/")" = "rs$i" ] || die "HTTP server rs$i:$port did not come up"
    done
done
say "HTTP servers answer on rs1/rs2 ports 80 and 443"

# ---- traffic: every client, both ports, twice
declare -A seen=()
fail=0
for c in "${CLIENTS[@]}"; do
    answers=()
    for port in 80 443 80 443; do
        got=$(ip netns exec fwc curl -s -m 10 --interface "$c" "http://$VIP:$port/" || true)
        answers+=("$port->${got:-NOTHING}")
    done
    first=${answers[0]#*->}
    same=yes
    for a in "${answers[@]}"; do [ "${a#*->}" = "$first" ] || same=no; done
    [[ $first == rs[12] ]] || same=no
    echo "client $c: ${answers[*]}  same real server on both ports: $same"
    [ "$same" = yes ] || fail=1
    seen[$first]=1
done
echo "--- ipvsadm -Lnc (persistence templates and connections)"
ipvsadm -Lnc
echo "--- ipvsadm -Ln --stats"
ipvsadm -Ln --stats
[ "$fail" = 0 ] || die "a client reached different real servers on ports 80 and 443 (persistence across the fwmark service broken)"
[ "${#seen[@]}" = 2 ] || die "clients did not spread over both real servers (saw: ${!seen[*]})"
say "PASS: each of ${#CLIENTS[@]} clients stuck to one real server on ports 80 and 443; clients spread over ${!seen[*]}"
