"""Operator holds: mail of paused jobs and paused recipient domains waits here."""

from __future__ import annotations

from collections import defaultdict

from outrider.queue.control_state import ControlState
from outrider.queue.model import DeliveryQueue, WorkItem


class Holds:
    def __init__(self, control: ControlState) -> None:
        self.control = control
        self.jobs: defaultdict[str, list[WorkItem]] = defaultdict(list)
        self.domains: defaultdict[str, list[WorkItem]] = defaultdict(list)

    def queue_paused(self, queue: DeliveryQueue) -> bool:
        """The queue as a whole is paused (by its name or destination)."""
        paused = self.control.paused_queues
        return bool(paused) and (queue.name in paused or queue.key in paused)

    def job_paused(self, job_id: str) -> bool:
        return bool(job_id) and job_id in self.control.paused_jobs

    def park(self, item: WorkItem) -> bool:
        """Hold an item of a paused job or a paused recipient domain; True if held.

        A domain pause is per item because under mx-rollup one queue carries several
        domains, and pausing one of them must not stop the others."""
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

    def counts(self) -> dict[str, int]:
        return {
            **{f"job:{job}": len(items) for job, items in self.jobs.items() if items},
            **{f"domain:{d}": len(items) for d, items in self.domains.items() if items},
        }
