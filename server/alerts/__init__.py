"""Alerts: rules, the pure evaluator and the route bodies (no I/O; docs/alerts.md)."""
