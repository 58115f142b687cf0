"""Contract tests: one suite every Store adapter must pass."""
