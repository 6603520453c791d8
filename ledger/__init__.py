"""radledger's shared data model: records, canonical encoding, keys, Merkle proofs.

This package imports nothing else of radledger; every other package builds on it.
"""
