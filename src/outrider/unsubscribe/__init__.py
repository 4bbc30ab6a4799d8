"""One-click unsubscribe (RFC 8058): signed tokens, the List-Unsubscribe headers, the handlers."""
