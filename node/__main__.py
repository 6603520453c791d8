"""``python -m node``: the radledger command line (what the devnet starts per node)."""

from node.cli import main

main()
