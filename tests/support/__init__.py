"""Real servers for the tests (PostgreSQL, ...), started on loopback and stopped after."""
