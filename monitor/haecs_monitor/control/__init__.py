"""The control surface: HTTP server and API, the client and haecsctl, the
dashboard, metrics and the status report."""
