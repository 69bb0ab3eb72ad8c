"""The running monitor: the daemon (lifecycle, applier, admin, reload), the
check scheduler, the remembered state (admin states, managed services), its
event log, loop-lag watch, notifications, systemd notify, the state file
and the descriptor limit."""
