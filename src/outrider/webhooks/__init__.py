"""Event webhooks: delivery events POSTed in signed batches from a durable on-disk queue."""
