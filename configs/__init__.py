"""Example configuration; configs/grafana holds the dashboard generator."""
