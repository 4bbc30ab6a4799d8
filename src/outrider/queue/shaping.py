"""Reacting to what remote servers say: backoff mode and disabled source IPs.

Replies are matched against the queue's smtp-pattern-list; a match may put the queue
into backoff mode (slower limits until it recovers), back to normal, or disable the
queue's source IP for the destination for a while (its mail moves to the pool's other
members). Every transition is published as a :class:`QueueEvent` and persisted in the
operator state, so a restart resumes in the same mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from outrider.events.types import QueueEvent
from outrider.policy.backoff import Mode, Transition
from outrider.policy.patterns import Action, Match, match_reply
from outrider.queue.context import Context
from outrider.queue.model import DeliveryQueue, Destination, WorkItem
from outrider.smtp.replies import Reply

log = logging.getLogger("outrider.queue")
REENABLE_SLACK = 0.01
REFRESH_SHARE_EVERY = 1.0  # seconds between shared refreshes of one queue's backoff


class Shaper:
    def __init__(
        self,
        ctx: Context,
        destination: Callable[[str], Destination],
        reroute: Callable[[WorkItem, str], None],
        kick: Callable[[DeliveryQueue], None],
        queues: Callable[[], Iterable[DeliveryQueue]] = tuple,
    ) -> None:
        self.ctx = ctx
        self.destination = destination  # Router.destination
        self.reroute = reroute  # Router.to_queue: same destination, another source
        self.kick = kick  # Slots.maybe_connect: limits changed, maybe connect now
        self.queues = queues  # every delivery queue (for changes made by other nodes)
        self._refreshed: dict[str, float] = {}  # queue name -> last shared backoff refresh

    def react(self, queue: DeliveryQueue, reply: Reply, phase: str, host: str) -> list[Match]:
        """Match a remote reply against the queue's pattern list and act on it."""
        list_name = queue.policy.smtp_pattern_list
        if not list_name or reply.code < 400:
            return []
        rules = self.ctx.config.pattern_lists.get(list_name, ())
        matches = match_reply(rules, str(reply), phase)
        now = self.ctx.clock()
        for match in matches:
            if match.action is Action.BACKOFF:
                transition = queue.backoff.enter(now, rule=match.rule, reply=match.reply)
                if transition is None:
                    self._share_refresh(queue, now)
                self.record_transition(queue, transition, host)
            elif match.action is Action.NORMAL:
                transition = queue.backoff.leave(
                    now, reason="pattern", rule=match.rule, reply=match.reply
                )
                self.record_transition(queue, transition, host)
            elif match.action is Action.DISABLE_SOURCE_IP:
                self.disable_source(queue, match, host, now)
        return matches

    def _share_refresh(self, queue: DeliveryQueue, now: float) -> None:
        """Another match while in backoff restarts its timer here; with a cluster, tell
        the other nodes too (at most once a second per queue), so that none of them
        returns to normal on an older timer while this node still gets throttled."""
        if self.ctx.share is None or queue.mode is not Mode.BACKOFF:
            return
        if now - self._refreshed.get(queue.name, 0.0) >= REFRESH_SHARE_EVERY:
            self._refreshed[queue.name] = now
            self.ctx.shared("backoff", queue.name, True, now)

    def on_delivery(self, queue: DeliveryQueue) -> None:
        transition = queue.backoff.on_delivery(
            self.ctx.clock(),
            to_normal_after_delivery=queue.policy.backoff_to_normal_after_delivery,
        )
        if transition is not None:
            self.record_transition(queue, transition)

    def record_transition(
        self, queue: DeliveryQueue, transition: Transition | None, host: str = ""
    ) -> None:
        if transition is None:
            return
        queue.apply_limits()
        new = "backoff" if transition.to_mode is Mode.BACKOFF else "normal"
        reply = transition.reply or ""
        log.warning(
            "%s: %s mode (%s%s)", queue.name, new, transition.reason, f": {reply}" if reply else ""
        )
        self.ctx.bus.publish(
            QueueEvent(
                self.ctx.clock(), queue.name, queue.vmta, new, reply, host, transition.rule or ""
            )
        )
        if transition.to_mode is Mode.BACKOFF:
            self.ctx.control.backoff[queue.name] = transition.at
        else:
            self.ctx.control.backoff.pop(queue.name, None)
        self.ctx.shared("backoff", queue.name, transition.to_mode is Mode.BACKOFF, transition.at)
        self.ctx.save_control()
        if queue.backoff_timer is not None:
            queue.backoff_timer.cancel()
            queue.backoff_timer = None
        self._arm_backoff(queue)
        self.kick(queue)

    def restore_backoff(self, queue: DeliveryQueue) -> None:
        """A queue that was in backoff before a restart starts in backoff again."""
        since = self.ctx.control.backoff.get(queue.name)
        if since is None:
            return
        after = queue.policy.backoff_to_normal_after
        if after is not None and since + after <= self.ctx.clock():
            del self.ctx.control.backoff[queue.name]
            return
        queue.backoff.enter(since, rule=None, reply=None, reason="restored")
        log.info("%s: backoff mode restored (entered at %.0f)", queue.name, since)
        self._arm_backoff(queue)

    def _arm_backoff(self, queue: DeliveryQueue) -> None:
        deadline = queue.backoff.next_deadline(queue.policy.backoff_to_normal_after)
        if deadline is None or self.ctx.stopping:
            return
        delay = max(0.0, deadline - self.ctx.clock())
        queue.backoff_timer = self.ctx.loop.call_later(delay, self._backoff_tick, queue)

    def _backoff_tick(self, queue: DeliveryQueue) -> None:
        queue.backoff_timer = None
        transition = queue.backoff.tick(
            self.ctx.clock(), to_normal_after=queue.policy.backoff_to_normal_after
        )
        if transition is None:
            self._arm_backoff(queue)  # refreshed meanwhile: wait for the new deadline
        else:
            self.record_transition(queue, transition)

    # -- source IPs --------------------------------------------------------------------------
    def restore_disabled(self, dest: Destination) -> None:
        """Source IPs disabled for this destination before a restart stay disabled."""
        now = self.ctx.clock()
        for vmta, until in self.ctx.control.disabled.get(dest.key, {}).items():
            if until > now:
                dest.disabled.disable(vmta, now, until=until, rule=None, reply=None)
                self._arm_reenable(dest.key, vmta, until - now)

    def _arm_reenable(self, key: str, vmta: str, delay: float) -> None:
        self.ctx.loop.call_later(delay + REENABLE_SLACK, self._reenable_source, key, vmta)

    def disable_source(self, queue: DeliveryQueue, match: Match, host: str, now: float) -> None:
        dest = self.destination(queue.key)
        until = now + queue.policy.reenable_source_ip_after
        record = dest.disabled.disable(
            queue.vmta, now, until=until, rule=match.rule, reply=match.reply
        )
        if record is None:
            return
        log.warning("%s: source %s disabled until %.0f", queue.key, queue.vmta, until)
        self.ctx.bus.publish(
            QueueEvent(
                now, queue.name, queue.vmta, "source-ip-disabled", match.reply, host, match.rule
            )
        )
        self.ctx.shared("source", f"{queue.key}/{queue.vmta}", True, until)
        self._disabled_here(queue.key, queue.vmta, until, now, queue)

    def _disabled_here(
        self, key: str, vmta: str, until: float, now: float, queue: DeliveryQueue | None
    ) -> None:
        self.ctx.control.disabled.setdefault(key, {})[vmta] = until
        self.ctx.save_control()
        self._arm_reenable(key, vmta, until - now)
        # Mail waiting in this queue moves to the pool's other members.
        if queue is not None:
            items = list(queue.ready)
            queue.ready.clear()
            for item in items:
                self.reroute(item, key)

    def apply_disabled(self, key: str, vmta: str, until: float) -> None:
        """Another node disabled ``vmta`` for destination ``key`` until ``until``."""
        now = self.ctx.clock()
        if until <= now:
            return
        dest = self.destination(key)
        record = dest.disabled.disable(vmta, now, until=until, rule=None, reply=None)
        if record is None:
            return  # already disabled here: the later deadline is kept
        log.warning("%s: source %s disabled until %.0f (cluster)", key, vmta, until)
        queue = next((q for q in self.queues() if q.key == key and q.vmta == vmta), None)
        self._disabled_here(key, vmta, until, now, queue)

    def _reenable_source(self, key: str, vmta: str) -> None:
        dest = self.destination(key)
        now = self.ctx.clock()
        until = dest.disabled.disabled(now).get(vmta)
        if until is not None:  # extended by later matches: check again then
            self._arm_reenable(key, vmta, until - now)
            return
        if not dest.disabled.enable(vmta):
            # Enabled already by another timer: a source disabled again between its time
            # and its timer (REENABLE_SLACK) has two timers for the new deadline.
            return
        sources = self.ctx.control.disabled.get(key, {})
        if sources.pop(vmta, None) is not None:
            self.ctx.save_control()
        log.info("%s: source %s enabled again", key, vmta)
        self.ctx.bus.publish(QueueEvent(now, f"{key}/{vmta}", vmta, "source-ip-enabled"))
