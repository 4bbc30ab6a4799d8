"""Mail for this server's own domains: mailboxes, aliases and mailing lists."""
