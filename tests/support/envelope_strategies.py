"""Hypothesis strategies for envelopes with every field drawn (shared by the tests of
each envelope encoding: the spool's JSON, the packed in-memory form, the snapshot)."""

from __future__ import annotations

from hypothesis import strategies as st

from outrider.message.envelope import (
    NO_EXTRA,
    Envelope,
    Notify,
    RcptStatus,
    Recipient,
    Ret,
    Source,
)

TEXT = st.text(max_size=40)
NOTIFY = st.one_of(st.none(), st.sampled_from([*Notify, Notify.NEVER, ~Notify.NEVER]))

recipients = st.builds(
    Recipient,
    address=TEXT,
    orcpt=st.one_of(st.none(), TEXT),
    notify=NOTIFY,
    status=st.sampled_from(list(RcptStatus)),
    attempts=st.integers(0, 10_000),
    next_attempt=st.floats(0, 4e9),
    last_reply=TEXT,
    last_mta=TEXT,
    relayed_owed=st.booleans(),
)


def envelopes(*, notice_state: bool = True) -> st.SearchStrategy[Envelope]:
    """Envelopes with every field drawn; without ``notice_state`` the delay-warned mark
    and the notices owed keep their defaults (the spool keeps them in its tail records,
    not in the envelope's JSON)."""
    return st.builds(
        Envelope,
        queue_id=TEXT,
        sender=TEXT,
        recipients=st.lists(recipients, max_size=5),
        received_at=st.floats(0, 4e9),
        size=st.integers(0, 2**40),
        ret=st.one_of(st.none(), st.sampled_from(list(Ret))),
        envid=st.one_of(st.none(), TEXT),
        smtputf8=st.booleans(),
        body_8bit=st.booleans(),
        body_binary=st.booleans(),
        client_address=TEXT,
        helo=TEXT,
        job_id=TEXT,
        msg_id=TEXT,
        vmta=TEXT,
        source=st.sampled_from(list(Source)),
        auth_user=TEXT,
        listener=TEXT,
        vmta_request=TEXT,
        listener_vmta=TEXT,
        extra=st.one_of(st.just(NO_EXTRA), st.dictionaries(TEXT, TEXT, max_size=3)),
        delay_warned=st.booleans() if notice_state else st.just(False),
        notices=st.sampled_from(["", "F", "D", "S", "DF", "FS"]) if notice_state else st.just(""),
    )
