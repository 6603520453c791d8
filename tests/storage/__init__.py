"""Tests of storage/: one contract suite for both stores, LevelDB specifics, crash safety."""
