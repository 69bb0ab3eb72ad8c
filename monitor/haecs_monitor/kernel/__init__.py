"""The kernel side: the actuator, the only writer of the monitor's services,
through the collection's IPVS engine."""
