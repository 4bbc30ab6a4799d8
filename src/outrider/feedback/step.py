"""The intake's VERP step: a single-recipient message from a VERP bounce domain gets a
return path naming its recipient (:mod:`outrider.feedback.verp`).

Only the envelope changes, so the step's place relative to DKIM signing does not matter.
A message with several recipients keeps its sender (one return path cannot name them
all); so does one whose token would make the local part longer than 64 octets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from outrider.config.model import Config
from outrider.feedback.keys import verp_secrets
from outrider.feedback.verp import VerpError, decode, encode
from outrider.message.envelope import Envelope


@dataclass(frozen=True, slots=True)
class VerpRewriter:
    secrets: Mapping[str, bytes]  # bounce domains with verp = true -> key

    def rewrite(self, envelope: Envelope) -> bool:
        """Rewrite ``envelope.sender`` in place; whether it was rewritten."""
        if len(envelope.recipients) != 1 or not envelope.sender:
            return False
        secret = self.secrets.get(envelope.sender.rpartition("@")[2].lower())
        if secret is None:
            return False
        try:
            decode(secret, envelope.sender)
            return False  # already a VERP address of ours (a resubmission)
        except VerpError:
            pass
        new = encode(secret, envelope.sender, envelope.recipients[0].address, envelope.job_id)
        if new is None:
            return False
        envelope.sender = new
        return True


def verp_from_config(config: Config) -> VerpRewriter | None:
    """None (no cost at all) when no bounce domain has ``verp = true``."""
    secrets = verp_secrets(config, only_verp=True)
    return VerpRewriter(secrets) if secrets else None
