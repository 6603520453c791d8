"""Tests of what operators run beside the nodes: Prometheus rules and configs, the dashboard."""
