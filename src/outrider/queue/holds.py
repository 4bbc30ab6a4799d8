"""Operator holds: mail of paused jobs, paused recipient domains and held messages
waits here."""

from __future__ import annotations

from collections import defaultdict

from outrider.queue.control_state import ControlState
from outrider.queue.model import DeliveryQueue, WorkItem


class Holds:
    def __init__(self, control: ControlState) -> None:
        self.control = control
        self.jobs: defaultdict[str, list[WorkItem]] = defaultdict(list)
        self.domains: defaultdict[str, list[WorkItem]] = defaultdict(list)
        self.messages: defaultdict[str, list[WorkItem]] = defaultdict(list)

    def queue_paused(self, queue: DeliveryQueue) -> bool:
        """The queue as a whole is paused (by its name or destination)."""
        paused = self.control.paused_queues
        return bool(paused) and (queue.name in paused or queue.key in paused)

    def paused_by(self, queue: DeliveryQueue) -> str:
        """The pause that holds ``queue``: its own name, its destination or its domain
        ("" when none does)."""
        paused = self.control.paused_queues
        return next((n for n in (queue.name, queue.key, queue.domain) if n in paused), "")

    def job_paused(self, job_id: str) -> bool:
        return bool(job_id) and job_id in self.control.paused_jobs

    def message_held(self, queue_id: str) -> bool:
        return queue_id in self.control.held_messages

    def park(self, item: WorkItem) -> bool:
        """Hold an item of a paused job or a paused recipient domain; True if held.

        A domain pause is per item because under mx-rollup one queue carries several
        domains, and pausing one of them must not stop the others."""
        queue_id = item.message.envelope.queue_id
        if queue_id in self.control.held_messages:
            self.messages[queue_id].append(item)
            return True
        job = item.message.envelope.job_id
        if job and job in self.control.paused_jobs:
            self.jobs[job].append(item)
            return True
        if item.domain in self.control.paused_queues:
            self.domains[item.domain].append(item)
            return True
        return False

    def release_job(self, job_id: str) -> list[WorkItem]:
        return self.jobs.pop(job_id, [])

    def release_domain(self, domain: str) -> list[WorkItem]:
        return self.domains.pop(domain, [])

    def release_message(self, queue_id: str) -> list[WorkItem]:
        return self.messages.pop(queue_id, [])

    def parked(self) -> list[list[WorkItem]]:
        """Every list of held items (for the console's look-ups and removals)."""
        return [*self.jobs.values(), *self.domains.values(), *self.messages.values()]

    def counts(self) -> dict[str, int]:
        return {
            **{f"job:{job}": len(items) for job, items in self.jobs.items() if items},
            **{f"domain:{d}": len(items) for d, items in self.domains.items() if items},
            **{f"message:{m}": len(items) for m, items in self.messages.items() if items},
        }
