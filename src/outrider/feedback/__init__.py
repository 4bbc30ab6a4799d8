"""Bounce domains: asynchronous bounces (RFC 3464), feedback loops (RFC 5965) and VERP."""
