"""What is queued, recipient by recipient, for the console's look-ups and actions.

A pending recipient is in one of several places: ready in its delivery queue, held by
an operator pause, in a connection's hands, or waiting for its retry time (then it is
in no queue at all, only behind its message's timer). The inventory walks the
scheduler's messages, so every pending recipient is seen once whichever place it is
in, and names the queue it waits for: the one it was last routed to, else
``domain/virtual-MTA``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSequence
from dataclasses import dataclass

from outrider.message.domains import domain_key
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.queue.holds import Holds
from outrider.queue.model import QueuedMessage, WorkItem


def queue_name(name: str) -> str:
    """An operator's queue or domain name in the scheduler's spelling: the destination
    part as an A-label (``Straße.test/pool`` is ``xn--strae-oqa.test/pool``)."""
    destination, slash, vmta = name.partition("/")
    return domain_key(destination) + slash + vmta


def queue_of(msg: QueuedMessage, env: Envelope, rcpt: Recipient, domain: str | None = None) -> str:
    """The delivery queue a pending recipient of ``msg`` (whose envelope, or a view of it,
    is ``env``) waits for (``domain``: its domain, when the caller has it already)."""
    if domain is None:
        domain = rcpt.domain
    routed = msg.routed_to(domain)
    if routed is not None:
        return routed
    return f"{domain}/{env.vmta or 'default'}"


@dataclass(frozen=True, slots=True)
class Selector:
    """Which queued recipients a console command is about; empty fields match all."""

    queue: str = ""  # a queue name, a destination or a recipient domain
    message: str = ""  # a queue id
    rcpt: str = ""  # a recipient address (case-insensitive)
    job: str = ""
    sender: str = ""  # a sender address (case-insensitive); "<>" for the null sender
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.queue or self.message or self.rcpt or self.job or self.sender)

    def matches(self, env: Envelope, rcpt: Recipient, queue: str) -> bool:
        if self.empty:
            return True
        if self.message and env.queue_id != self.message:
            return False
        if self.job and env.job_id != self.job:
            return False
        if self.sender and env.sender.lower() != self.sender.lower().strip("<>"):
            return False
        if self.rcpt and rcpt.address.lower() != self.rcpt.lower():
            return False
        if self.queue:
            wanted = queue_name(self.queue)
            if wanted not in (queue, queue.rpartition("/")[0], rcpt.domain):
                return False
        return True


def pending(
    messages: Iterable[QueuedMessage], selector: Selector
) -> Iterator[tuple[QueuedMessage, Recipient, str]]:
    """Every pending recipient ``selector`` matches, with its message and the queue it
    waits for. The recipient is the message's own (to act on): a packed message is
    matched on a view and unpacked only when one of its recipients matches."""
    for msg in messages:
        if msg.removing:
            continue
        view = msg.view()
        for i, rcpt in enumerate(view.recipients):
            if rcpt.status is RcptStatus.PENDING:
                queue = queue_of(msg, view, rcpt)
                if selector.matches(view, rcpt, queue):
                    yield msg, msg.envelope.recipients[i], queue


def recipient_state(holds: Holds, env: Envelope, rcpt: Recipient, queue: str, now: float) -> str:
    """``held`` (an operator pause or hold), ``deferred`` (waiting for its retry time)
    or ``queued`` (ready, or being delivered)."""
    control = holds.control
    paused = control.paused_queues
    if (
        (control.held_messages and env.queue_id in control.held_messages)
        or holds.job_paused(env.job_id)
        or (
            paused
            and (queue in paused or queue.rpartition("/")[0] in paused or rcpt.domain in paused)
        )
    ):
        return "held"
    if rcpt.next_attempt > now:
        return "deferred"
    return "queued"


Container = MutableSequence[WorkItem]  # a queue's ready deque or a list of held items


def locate_items(containers: Iterable[Container]) -> dict[int, tuple[Container, WorkItem]]:
    """Where each recipient routed and not yet taken by a connection is: ``id(rcpt)`` to
    (the deque or list holding its work item, the item). A pending recipient that is
    neither here nor waiting for its retry time is in a connection's hands."""
    found: dict[int, tuple[Container, WorkItem]] = {}
    for container in containers:
        for item in container:
            for rcpt in item.recipients:
                found[id(rcpt)] = (container, item)
    return found


def whole_message_held(parked: Iterable[Container]) -> set[int]:
    """Messages held before they were dispatched (a paused job, a held message): all of
    their pending recipients wait, none is in a connection's hands (``id`` of each)."""
    return {id(item.message) for items in parked for item in items if not item.recipients}
