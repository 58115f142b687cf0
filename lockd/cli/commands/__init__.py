"""One module per lockctl command; each exposes `register(commands)`."""
