"""Fault injection and bad input at the edges, against real node processes (issue #9)."""
