"""SCRAM for a name that is no user, through the daemon as it ships (receiver processes):
its salt is the same in every receiver and after a restart, as a real user's is, so
the salt does not tell which names exist."""

from __future__ import annotations

import base64
import smtplib
import stat
from collections.abc import Callable

from tests.support.daemon import DaemonHandle

CLIENT_FIRST = base64.b64encode(b"n,,n=nobody,r=clientnonce").decode()


def unknown_user_salt(d: DaemonHandle) -> str:
    """The salt of the server-first message; the exchange is left unfinished."""
    s = smtplib.SMTP(d.host, d.port, timeout=10)
    try:
        s.ehlo("client.test")
        code, challenge = s.docmd("AUTH", f"SCRAM-SHA-256 {CLIENT_FIRST}")
        assert code == 334, (code, challenge)
        fields = dict(f.split("=", 1) for f in base64.b64decode(challenge).decode().split(","))
        return fields["s"]
    finally:
        s.close()  # hang up mid-exchange: not a failed AUTH


def test_unknown_users_get_one_salt_in_every_receiver_and_after_a_restart(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    d = make_daemon(receiver_processes=2)
    d.edit_config(
        "max-rcpt-per-message = 100",
        # Each probe hangs up mid-exchange, which counts as an attempt: allow plenty.
        "max-rcpt-per-message = 100\nauth = true\nallow-plaintext-auth = true\n"
        "auth-max-failures = 100",
    )
    d.start()
    # Connections from different source ports spread over both receivers.
    salts = {unknown_user_salt(d) for _ in range(12)}
    assert len(salts) == 1
    assert d.stop() == 0
    d.start()
    assert {unknown_user_salt(d) for _ in range(4)} == salts
    assert d.stop() == 0
    secret = d.workdir / "var" / "state" / "scram-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
