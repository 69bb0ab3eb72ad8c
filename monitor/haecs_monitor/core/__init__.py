"""The decision core, pure: check results to server states (``health``),
server states to the table the kernel should hold (``desired``), names
(``ids``)."""
