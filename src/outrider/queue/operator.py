"""Operator commands on the schedule: pause and resume, backoff by hand, status.

The internal API under the control socket (and later the HTTP API and console): each
call changes the persisted operator state and lets the scheduler act on it.
"""

from __future__ import annotations

import logging
from typing import Any

from outrider.queue.inventory import Selector, pending, queue_name
from outrider.queue.scheduler import Scheduler

log = logging.getLogger("outrider.queue")


class Operator:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.ctx = scheduler.ctx

    def _save(self) -> None:
        self.ctx.control.save(self.ctx.config.server.state_dir)

    def pause_queue(self, name: str) -> bool:
        """Pause a queue ("key/vmta"), a destination (every virtual MTA), or one recipient
        domain (its mail is held even when it shares a rolled-up queue with others).
        A name with no mail yet is paused all the same (mail for it is held when it
        comes); returns whether it matches a queue or queued mail now."""
        name = queue_name(name)
        self.ctx.control.paused_queues.add(name)
        self.ctx.shared("queue", name, True)
        self._save()
        log.info("paused queue %s", name)
        return self.knows_queue(name)

    def knows_queue(self, name: str) -> bool:
        """A delivery queue, destination or domain with a queue or queued mail."""
        name = queue_name(name)
        if any(name in (q.name, q.key, q.domain) for q in self.scheduler.queues.values()):
            return True
        found = pending(self.scheduler.messages.values(), Selector(queue=name))
        return next(found, None) is not None

    def resume_queue(self, name: str) -> bool:
        """Lift the pause on ``name``; for a queue held by a pause on its destination or
        domain (``pause queue example.net`` holds ``example.net/default``), lift that one,
        which resumes the destination's or domain's other queues too."""
        name = queue_name(name)
        paused = self.ctx.control.paused_queues
        covering = {name} & paused or {
            by
            for queue in self.scheduler.queues.values()
            if queue.name == name and (by := self.scheduler.holds.paused_by(queue))
        }
        if not covering:
            return False
        paused.difference_update(covering)
        for lifted in covering:
            self.ctx.shared("queue", lifted, False)
        self._save()
        log.info("resumed queue %s", ", ".join(sorted(covering)))
        scheduler = self.scheduler
        for lifted in covering:
            for item in scheduler.holds.release_domain(lifted):
                scheduler.reroute(item)
        for queue in scheduler.queues.values():
            scheduler.slots.maybe_connect(queue)
        return True

    def pause_job(self, job_id: str) -> bool:
        """Pause a job; returns whether mail of it is queued now (a job with none is
        paused all the same, so a campaign can be stopped before it is injected)."""
        self.ctx.control.paused_jobs.add(job_id)
        self.ctx.shared("job", job_id, True)
        self._save()
        log.info("paused job %s", job_id)
        return any(m.job_id == job_id for m in self.scheduler.messages.values())

    def resume_job(self, job_id: str) -> bool:
        if job_id not in self.ctx.control.paused_jobs:
            return False
        self.ctx.control.paused_jobs.discard(job_id)
        self.ctx.shared("job", job_id, False)
        self._save()
        log.info("resumed job %s", job_id)
        for item in self.scheduler.holds.release_job(job_id):
            self.scheduler.reroute(item)
        return True

    def set_mode(self, name: str, mode: str, reason: str = "manual") -> int:
        """Put matching queues into backoff or back to normal by hand; returns how many."""
        name = queue_name(name)
        now = self.ctx.clock()
        count = 0
        shaper = self.scheduler.shaper
        for queue in self.scheduler.queues.values():
            if name not in (queue.name, queue.key, queue.domain):
                continue
            if mode == "backoff":
                transition = queue.backoff.enter(now, rule=None, reply=None, reason=reason)
            else:
                transition = queue.backoff.leave(now, reason=reason)
            shaper.record_transition(queue, transition)
            count += 1
        return count

    def disable_source(self, ip: str) -> list[str]:
        """Stop sending from a source IP to every destination until enabled again; returns
        the virtual MTAs using it (none: nothing changes). Mail ready in their queues is
        routed again: to another member of its pool, or deferred (4.4.5)."""
        vmtas = self.vmtas_of(ip)
        if not vmtas:
            return []
        self.ctx.control.disabled_ips.add(ip)
        self.ctx.shared("ip", ip, True)
        self._save()
        log.warning("source %s disabled by the operator (%s)", ip, ", ".join(vmtas))
        for queue in list(self.scheduler.queues.values()):
            if queue.vmta in vmtas and queue.ready:
                items = list(queue.ready)
                queue.ready.clear()
                for item in items:
                    self.scheduler.reroute(item)
        return vmtas

    def enable_source(self, ip: str) -> bool:
        if ip not in self.ctx.control.disabled_ips:
            return False
        self.ctx.control.disabled_ips.discard(ip)
        self.ctx.shared("ip", ip, False)
        self._save()
        log.info("source %s enabled by the operator", ip)
        return True

    def vmtas_of(self, ip: str) -> list[str]:
        return sorted(name for name, v in self.ctx.config.virtual_mtas.items() if v.source_ip == ip)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock()
        scheduler = self.scheduler
        control = self.ctx.control
        return {
            "messages": len(scheduler.messages),
            "connections": scheduler.slots.total_active,
            "paused_queues": sorted(control.paused_queues),
            "paused_jobs": sorted(control.paused_jobs),
            "held_messages": sorted(control.held_messages),
            "disabled_ips": sorted(control.disabled_ips),
            "held": scheduler.holds.counts(),
            "queues": [
                {
                    "name": q.name,
                    "destination": q.key,
                    "vmta": q.vmta,
                    "domain": q.domain,
                    "mode": q.mode.value,
                    "paused": scheduler.holds.queue_paused(q),
                    "ready": len(q.ready),
                    "connections": q.active,
                    "window": q.window.limit,
                    "dead": q.dead.is_dead(now),
                    "delivered": q.delivered,
                    "failed": q.failed,
                    "deferred": q.deferred,
                    "disabled_sources": sorted(
                        scheduler.router.destination(q.key).disabled.disabled(now)
                    ),
                }
                for q in scheduler.queues.values()
            ],
        }
