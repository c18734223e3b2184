"""tap-postgres: the built-in Singer tap for PostgreSQL tables and views."""
