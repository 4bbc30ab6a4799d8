"""What the intake is told about a message: who submits it, how, and what it asks for.

A :class:`Submission` carries the facts of one transaction that do not travel in the
message itself: where it came from (an SMTP client, the HTTP API, a DSN, a list
expansion), the client and its rights, the listener and what it settles for its
messages. Every source builds one, so checks and header completion need not know
which source they serve. :class:`MailEnvelope` is the envelope as submitted (reverse
path and accepted recipients), before the intake gives it a queue id.
"""

from __future__ import annotations

from dataclasses import dataclass

from outrider.message.envelope import Notify, Ret, Source

__all__ = ["MailEnvelope", "MailRecipient", "Source", "Submission"]


@dataclass(frozen=True, slots=True)
class Submission:
    source: Source
    listener: str = ""  # listener name ("host:port"); "" outside SMTP
    client_ip: str = ""
    helo: str = ""
    protocol: str = "ESMTP"  # the Received header's "with" (RFC 3848: ESMTPSA, UTF8SMTP...)
    client_trusted: bool = False  # may relay anywhere (the listener's relay-networks)
    auth_user: str | None = None  # SMTP AUTH (or API) user; None: anonymous
    vmta_request: str | None = None  # a virtual MTA asked for by the source itself (API)
    vmta_header: bool = False  # X-Virtual-MTA may choose (the listener's process-x-virtual-mta)
    listener_vmta: str | None = None  # the listener's default-virtual-mta
    job_id: str | None = None  # given by the source; None: X-Job, if the client may relay
    envid: str | None = None  # DSN ENVID (xtext decoded)
    ret: Ret | None = None  # DSN RET
    smtputf8: bool = False
    body_8bit: bool = False  # BODY=8BITMIME or BINARYMIME
    body_binary: bool = False  # BODY=BINARYMIME (RFC 3030): may hold NUL, bare CR/LF, long lines
    add_missing_headers: bool = False  # add Date and Message-ID when absent (RFC 6409 8)
    # List-Unsubscribe asked for (True) or refused (False) by the source itself (the API's
    # "unsubscribe"); None: the trusted client's X-Outrider-Unsubscribe, else [unsubscribe]
    unsubscribe: bool | None = None

    @property
    def may_relay(self) -> bool:
        """Trusted network or authenticated: any recipient domain is allowed."""
        return self.client_trusted or self.auth_user is not None


@dataclass(frozen=True, slots=True)
class MailRecipient:
    address: str  # forward-path without angle brackets
    notify: Notify | None = None
    orcpt: str | None = None
    forwarded: bool = False  # a local alias sends it on to a remote address (SRS applies)


@dataclass(frozen=True, slots=True)
class MailEnvelope:
    sender: str  # reverse-path without angle brackets; "" is the null sender
    recipients: tuple[MailRecipient, ...]
