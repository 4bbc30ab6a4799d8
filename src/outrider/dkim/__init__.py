"""DKIM signing (RFC 6376, Ed25519 by RFC 8463): canonicalisation, keys, the signer,
which ``[[dkim]]`` entries sign a message, the intake step and ``outrider dkim keygen``."""
