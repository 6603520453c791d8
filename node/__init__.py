"""The composition root: command line, and (as they land) daemon, RPC and metrics."""
