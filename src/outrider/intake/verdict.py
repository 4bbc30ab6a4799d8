"""What a check answers: go on, refuse with a reply, or refuse and close the connection.

A check's answer is either a :class:`Verdict` or an awaitable of one. The in-process
checks answer at once, so the common path costs no task; a check that must wait (a
throttle shared between processes) returns an awaitable, and only then does the
caller run a task for it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from dataclasses import dataclass

from outrider.smtp.replies import Reply


class Action(enum.Enum):
    CONTINUE = "continue"  # this check has no objection: ask the next one
    REJECT = "reject"  # refuse this command or message; the client may go on
    DISCONNECT = "disconnect"  # refuse and close the connection (the reply is a 421)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reply: Reply | None = None  # the refusal, with its enhanced status code

    def __post_init__(self) -> None:
        if self.action is Action.CONTINUE:
            if self.reply is not None:
                raise ValueError("a CONTINUE verdict has no reply")
            return
        if self.reply is None or self.reply.code < 400:
            raise ValueError(f"{self.action.value} needs a 4xx or 5xx reply, got {self.reply}")
        if self.action is Action.DISCONNECT and self.reply.code != 421:
            # RFC 5321 3.8: 421 is the reply that announces the server closes the channel.
            raise ValueError(f"a disconnect reply must be a 421, got {self.reply}")

    @property
    def refused(self) -> bool:
        return self.action is not Action.CONTINUE

    @classmethod
    def reject(cls, reply: Reply) -> Verdict:
        return cls(Action.REJECT, reply)

    @classmethod
    def disconnect(cls, reply: Reply) -> Verdict:
        return cls(Action.DISCONNECT, reply)


CONTINUE = Verdict(Action.CONTINUE)

VerdictResult = Verdict | Awaitable[Verdict]
"""What a check returns: a verdict now, or one to await."""
