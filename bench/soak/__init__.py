"""The soak test's parts (``bench/soak.py`` runs them): settings and the daemon config,
loopback SMTP sinks, the load clients, the daemon under kill -9, and the final audit."""
