"""The embedded local default: the ``tenant-trace`` command over the local store, the alert
rules evaluated over it, and the shipped Prometheus rules and Grafana dashboard."""
