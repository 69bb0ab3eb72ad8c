"""The running monitor: the daemon (lifecycle, scheduling, reload), its
event log, loop-lag watch, notifications, systemd notify, the state file
and the descriptor limit."""
