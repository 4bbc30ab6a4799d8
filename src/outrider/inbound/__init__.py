"""inbound package."""
