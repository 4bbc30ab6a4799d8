"""message package."""
