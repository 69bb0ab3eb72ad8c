"""The tcp check by SYN probing: one raw socket per address family.

    packet   build a SYN, parse a reply, the TCP checksum      (pure)
    bpf      the socket filter: only replies to our ports       (pure + attach)
    ports    reserve the source ports (bound, never connected TCP sockets)
    route    the source address the kernel picks per destination (cached)
    pending  probes waiting, and which segment answers which  (pure)
    prober   the raw socket: send, read, time out
    method   which method (syn or connect) a family uses, and why

See docs/design/monitor-deploy.md ("The tcp check: SYN probing") for the
design and its trade-off.
"""
