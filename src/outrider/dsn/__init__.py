"""dsn package."""
