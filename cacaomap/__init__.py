"""The ``cacaomap`` command: one module per stage, one flag grammar (see docs/cli.md)."""
