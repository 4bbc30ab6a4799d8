"""The composition root: builds the parts from the config and runs them until SIGTERM.

Start-up order matters for durability. The listeners open first, so mail is accepted
from the first second; the spool is recovered (streamed, in slices between loop turns)
into the queue manager while they run. Recovery reads no file the scheduler knows and
none written since the start (fresh mail, scheduled by its hand-off), and orphan
adoption waits until it is done, so a message is never scheduled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outrider import __version__
from outrider.accounting.subscriber import AccountingSubscriber
from outrider.accounting.writer import AccountingLog
from outrider.config.loader import ConfigError, load_config
from outrider.config.model import Config
from outrider.delivery.dns import MxResolver
from outrider.delivery.list_transport import ListExpander
from outrider.delivery.local_transport import LocalDelivery
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.dsn.notifier import DsnNotifier
from outrider.feedback.consumer import FeedbackConsumer
from outrider.feedback.keys import unsubscribe_secret, verp_secrets
from outrider.feedback.transport import BounceTransport
from outrider.inbound.receiver import Listener
from outrider.intake import Intake, SchedulerSink
from outrider.intake.build import (
    build_intake,
    build_notice_intake,
    reconfigure_intake,
    reconfigure_notice_intake,
)
from outrider.intake.sink import HeldSink
from outrider.local.aliases_file import AliasError
from outrider.local.build import LiveDirectory
from outrider.message.envelope import Envelope
from outrider.queue.control import ControlServer, DaemonHooks
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
from outrider.runtime import sd_notify
from outrider.runtime.adoption import OrphanAdopter
from outrider.runtime.event_log import EventLogSubscriber
from outrider.runtime.handoff import HandoffServer
from outrider.runtime.inbound_count import inbound_connections
from outrider.runtime.listeners import check_addresses_free, open_inbound, reload_listeners
from outrider.runtime.logs import DELIVERY, reconfigure_logging, settings_for
from outrider.runtime.receivers import ReceiverPool, ReceiversFailed
from outrider.runtime.route_info import explain_route
from outrider.runtime.stats import TrafficCounters, overview
from outrider.runtime.webhooks import Webhooks
from outrider.spool.disk import DiskSpool
from outrider.suppression.store import SuppressionStore
from outrider.suppression.subscriber import AutoSuppress
from outrider.throttle.remote import ThrottleServer

if TYPE_CHECKING:
    from outrider.cluster.shared_state import SharedControl
    from outrider.http.server import HttpServer

log = logging.getLogger("outrider.daemon")

RECOVERY_YIELD_EVERY = 1000
SUPERVISE_EVERY = 0.2  # seconds between looks at the receiver processes


class Daemon:
    def __init__(self, config_path: str | Path, config: Config) -> None:
        self.config_path = str(config_path)
        self.config = config
        self.stop_requested = asyncio.Event()
        self.listeners: list[Listener] = []
        self.receivers: ReceiverPool | None = None  # None: the listeners are in this process
        self.handoff: HandoffServer | None = None
        self.adopter: OrphanAdopter | None = None
        self.throttle_server: ThrottleServer | None = None
        self.exit_code = 0
        self.shared: SharedControl | None = None  # [cluster]: pauses, backoff, suppression
        self.intake: Intake | None = None  # None when the listeners are in receivers
        self.recovered = False  # the spool's recovery is done
        self.adopt_requested = False  # an orphan scan asked for during recovery

    async def run(self) -> int:
        config = self.config
        config.server.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.server.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock_spool(config.server.spool_dir)
        if config.server.receiver_processes > 0:
            check_addresses_free(config)
        spool = DiskSpool(config.server.spool_dir)
        accounting = AccountingLog(config.server.log_dir)
        # `[dns] timeout` bounds the whole lookup (every server and retry), not one query.
        timeout = config.dns.timeout
        resolver = MxResolver(nameserver_specs(config), timeout=timeout, lifetime=timeout)
        self.transport = SmtpTransport(config, resolver)
        self.directory = LiveDirectory(config)
        self.delivery = LocalDelivery(config, self.transport, self.directory.current)
        try:
            self.suppression = SuppressionStore(
                config.suppression.file, journal=config.cluster.redis is not None
            )
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(f"[suppression] file {config.suppression.file}: {exc}") from None
        # The in-memory filter is built in a worker thread from now on, so the first
        # messages after a start do not wait for it (SQLite answers until it is ready).
        self.suppression.start_filter()
        manager = Scheduler(
            config=config, spool=spool, transports=self.delivery, suppression=self.suppression
        )
        if config.cluster.redis is not None:  # imported only then: one node loads no Redis code
            from outrider.cluster.build import open_cluster

            manager.ctx.cluster = await open_cluster(config.cluster)
        # Mail for a [bounce-domain] is consumed here (DSNs, ARF reports, VERP replies).
        self.feedback = FeedbackConsumer(
            secrets=verp_secrets(config),
            store=self.suppression,
            publish=manager.bus.publish,
            hostname=config.server.hostname,
            classify=lambda status, diag: manager.bounce_categories.classify(status, diag),
            auto_add=lambda: self.config.suppression.auto_add,
            unsubscribe_secret=lambda: unsubscribe_secret(self.config),
            unsubscribe_max_age=lambda: self.config.unsubscribe.max_age,
            clock=manager.ctx.clock,
        )
        self.delivery.feedback = BounceTransport(self.feedback)
        self.accounting = AccountingSubscriber(accounting)
        self.accounting.configure(config.accounting)
        accounting.remove_expired()  # [accounting] keep, at start (then at each rotation)
        manager.bus.subscribe(self.accounting)
        event_log = EventLogSubscriber()
        manager.bus.subscribe(event_log)
        held = HeldSink()
        self.notice_intake = build_notice_intake(config, spool=spool, sink=held)
        notifier = DsnNotifier(
            spool,
            self.notice_intake,
            held,
            manager,
            policy_for=lambda domain: self.config.policy_for(domain),
            clock=manager.ctx.clock,
        )
        manager.bus.subscribe(notifier)
        self.list_intake = build_notice_intake(
            config, spool=spool, sink=SchedulerSink(manager.submit)
        )
        self.delivery.lists = ListExpander(self.list_intake, self.directory.current)
        # HTTP injection's intake: the listeners' checks and completion, straight to
        # this process's scheduler (with receiver processes too: the API runs here)
        self.api_intake = build_intake(
            config, spool=spool, sink=SchedulerSink(manager.submit), users=None
        )
        self.traffic = TrafficCounters(manager.ctx.clock)
        manager.bus.subscribe(self.traffic)
        self.auto_suppress = AutoSuppress(self.suppression)
        self.auto_suppress.enabled = config.suppression.auto_add
        manager.bus.subscribe(self.auto_suppress)
        self.started = manager.ctx.clock()
        self.manager = manager
        self.webhooks = Webhooks(manager.bus)
        self.webhooks.configure(config)  # before recovery: its events are queued too
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        # Recovery runs while the listeners (receiver processes) start and take mail.
        recovery = loop.create_task(self._recover(spool, manager, time.time_ns()))
        processes = config.server.receiver_processes
        try:
            if processes > 0:
                await self._start_receivers(processes, manager)
            else:
                auth_throttle = None
                if manager.ctx.cluster is not None:  # failed AUTH counted across the nodes
                    from outrider.cluster.wall_clock import WallClock

                    auth_throttle = WallClock(manager.ctx.cluster)
                self.intake, self.listeners = open_inbound(
                    config,
                    spool=spool,
                    sink=SchedulerSink(manager.submit),
                    reuse_port=False,
                    auth_throttle=auth_throttle,
                )
                for listener in self.listeners:
                    await listener.start()
            await recovery
        except BaseException:
            recovery.cancel()
            raise
        config.server.state_dir.mkdir(parents=True, exist_ok=True)
        if manager.ctx.cluster is not None:
            from outrider.cluster.shared_state import SharedControl
            from outrider.cluster.suppression_sync import SuppressionSync

            client = manager.ctx.cluster.client
            self.shared = SharedControl(client, Operator(manager), time.time)
            self.shared.suppression = SuppressionSync(client, self.suppression)
            self.shared.start()
        hooks = DaemonHooks(
            overview=self.overview,
            reload=self.apply_reload,
            route=self.route,
            cluster=self.cluster_view if manager.ctx.cluster is not None else None,
        )
        control = ControlServer(
            str(config.server.state_dir / "control.sock"), Operator(manager), hooks
        )
        await control.start()
        http = await self._start_http(manager, hooks)
        self._write_pid_file()

        log.info(
            "outrider %s started: %d listener(s), %d receiver process(es), %d queued",
            __version__,
            len(config.listeners),
            processes,
            manager.pending_messages,
        )
        # Only now: every listener (every receiver process) accepts and the spool is recovered.
        sd_notify.ready(
            f"{len(config.listeners)} listener(s), {processes} receiver process(es), "
            f"{manager.pending_messages} queued at start"
        )
        ticker = loop.create_task(self._tick(accounting), name="ticker")
        supervisor = None
        if self.receivers is not None:
            supervisor = loop.create_task(self._supervise(self.receivers), name="receivers")
        await self.stop_requested.wait()
        if supervisor is not None:
            supervisor.cancel()

        timeout = self.config.server.shutdown_timeout
        sd_notify.stopping(f"stopping: finishing in-flight work (up to {timeout}s)")
        log.info("stopping: finishing in-flight work (up to %ss)", timeout)
        await asyncio.gather(
            *(listener.stop(timeout) for listener in self.listeners), self._stop_receivers(timeout)
        )
        if self.adopter is not None:
            await self.adopter.stop()
        if self.handoff is not None:
            await self.handoff.stop()
        if self.throttle_server is not None:
            await self.throttle_server.stop()
        settled = await manager.stop(timeout)
        if self.shared is not None:
            await self.shared.stop()
        if manager.ctx.cluster is not None:
            await manager.ctx.cluster.client.stop()
        notices_done = await notifier.drain(timeout=5)
        manager.bus.flush()
        event_log.flush()
        await self.webhooks.stop()
        if http is not None:
            await http.stop()
        await control.stop()
        ticker.cancel()
        accounting.close()
        self.suppression.close()
        await spool.close()
        unclean = stop_unclean(
            recovered=self.recovered,
            settled=settled,
            notices_done=notices_done and not notifier.busy,  # none came up since
            tasks_left=sum(1 for task in manager.ctx.tasks if not task.done()),
            write_failures=spool.write_failures,
        )
        # listed on the loop's thread; the envelopes are built by the writer's
        count, entries = (0, iter(())) if unclean else manager.snapshot_entries()
        await asyncio.to_thread(self._leave_snapshot, spool, count, entries, unclean)
        self._remove_pid_file()
        with contextlib.suppress(FileNotFoundError):  # still locked: nobody else can hold it
            os.unlink(config.server.spool_dir / ".outrider.lock")
        if self.exit_code:
            log.error("stopped (exit status %d)", self.exit_code)
        else:
            log.info("stopped")
        return self.exit_code

    async def _start_http(self, manager: Scheduler, hooks: DaemonHooks) -> HttpServer | None:
        """The HTTP API (``[http] address``), in this process, on the same calls as the
        control socket; its address is read at start only."""
        if self.config.http.address is None:
            return None
        from outrider.http.server import HttpContext, HttpServer

        http = HttpServer(
            HttpContext(
                config=lambda: self.config,
                operator=Operator(manager),
                hooks=hooks,
                traffic=self.traffic,
                bus=manager.bus,
                clock=manager.ctx.clock,
                started=self.started,
                suppression=self.suppression,
                intake=self.api_intake,
                unsubscribe=lambda: self.api_intake.unsubscribe,
            )
        )
        await http.start()
        return http

    def overview(self) -> dict[str, Any]:
        """``outrider show status``."""
        manager = self.manager
        mode = manager.delivery_mode()
        if self.receivers is None:
            connections_in: int | None = sum(len(lst.ctx.sessions) for lst in self.listeners)
        else:  # the sessions are in the receiver processes: ask the kernel
            ports = {settings.address[1] for settings in self.config.listeners}
            connections_in = inbound_connections(ports)
        status = overview(
            started=self.started,
            now=manager.ctx.clock(),
            counters=self.traffic,
            connections_in=connections_in,
            connections_out=manager.slots.total_active,
            spool_messages=len(manager.messages),
            spool_bytes=manager.queued_bytes,
            spool_dir=self.config.server.spool_dir,
            delivery=(mode.name, mode.reason),
        )
        if self.webhooks.running:
            status["webhooks"] = self.webhooks.status()
        cluster = manager.ctx.cluster
        if cluster is not None:
            status["cluster"] = cluster.client.status() | {"leases": cluster.held_here()}
        return status

    async def cluster_view(self) -> dict[str, Any]:
        """``outrider show cluster``: the nodes, and per queue the shared limits in use."""
        from outrider.cluster.view import cluster_view

        cluster = self.manager.ctx.cluster
        assert cluster is not None and self.shared is not None
        state = self.shared.status() | {"leases_here": cluster.held_here()}
        return await cluster_view(cluster.client, state)

    async def route(self, address: str, vmta: str | None) -> dict[str, Any]:
        """``outrider route``: asks this daemon's resolver and its running config."""
        directory = self.directory.current()
        return await explain_route(self.config, self.transport, address, vmta, directory)

    async def _recover(self, spool: DiskSpool, manager: Scheduler, started_ns: int) -> None:
        began = time.monotonic()
        # First of all, before the scheduler can touch a spool file: the snapshot a
        # clean stop left is removed (then read), so it can never outlive a change.
        snapshot = await asyncio.to_thread(spool.take_snapshot)
        count = 0
        for envelope in spool.recover(
            known=manager.messages.__contains__, started_ns=started_ns, snapshot=snapshot
        ):
            manager.restore(envelope)
            count += 1
            if count % RECOVERY_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        manager.recovery_done()
        self.recovered = True
        stats = spool.recovery
        if stats.snapshot:
            log.info(
                "recovered %d queued message(s) from the spool: %d from the schedule "
                "snapshot, %d file(s) read, %d snapshot entr%s dropped (file gone), in %.1f s",
                count,
                stats.from_snapshot,
                stats.files_read,
                stats.dropped,
                "y" if stats.dropped == 1 else "ies",
                time.monotonic() - began,
            )
        elif count:
            log.info(
                "recovered %d queued message(s) from the spool: no schedule snapshot, "
                "%d file(s) read, in %.1f s",
                count,
                stats.files_read,
                time.monotonic() - began,
            )
        if self.adopt_requested:
            self._adopt()

    def _leave_snapshot(
        self, spool: DiskSpool, count: int, entries: Iterator[Envelope], unclean: str
    ) -> None:
        """At the very end of a stop: the schedule snapshot for the next start, or none.

        When the stop was clean, memory equals the files here. The scheduler only changes
        a message's state through the finisher, which records it in the spool (and
        removes finished messages) before anything else happens to the message;
        ``stop()`` cancelled no delivery or finisher task, the notifier finished every
        notice under way (each clears its notice with a record), the spool's committer
        has completed every write queued before ``close()`` (the spool is closed: no
        write can follow) and none failed or was refused, and recovery had restored
        every file. The receiver processes have exited, so no store can happen; a
        message stored but never handed over has a file and no entry, and the next start
        reads it. What memory holds beyond the files are scheduling hints the scheduler
        never records: a retry time an operator brought forward (``outrider retry``), a
        queue-run hold (``queue-only``), a virtual MTA chosen again after a reload; they
        change when mail is next tried (already due or past at the next start), never a
        recipient's state or a notice.
        """
        directory = self.config.server.spool_dir
        try:
            if unclean:
                if spool.remove_snapshot():
                    log.info("removed the schedule snapshot (%s)", unclean)
                log.warning("no schedule snapshot: %s; the next start reads every file", unclean)
                return
            if not count:  # nothing to save: an idle spool stays empty after a stop
                spool.remove_snapshot()
                return
            began = time.monotonic()
            size = spool.write_snapshot(entries, count)
            log.info(
                "wrote the schedule snapshot: %d message(s), %d octets, in %.1f s",
                count,
                size,
                time.monotonic() - began,
            )
        except OSError as exc:
            log.error("cannot write the schedule snapshot in %s: %s", directory, exc)
            with contextlib.suppress(OSError):
                spool.remove_snapshot()

    async def _tick(self, accounting: AccountingLog) -> None:
        while True:
            await asyncio.sleep(1.0)
            accounting.flush()
            self.webhooks.tick()
            for listener in self.listeners:
                listener.sweep_timeouts()

    def _lock_spool(self, spool_dir: Path) -> None:
        """One daemon per spool: two would recover and deliver the same files twice."""
        path = spool_dir / ".outrider.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeError(
                f"spool directory {spool_dir} is in use by another outrider (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._spool_lock = fd  # held (and the lock with it) for the life of the process

    # -- receiver processes ----------------------------------------------------------------
    async def _start_receivers(self, count: int, manager: Scheduler) -> None:
        # A fixed name, so a socket left by a crash is cleared by the next start.
        path = str(self.config.server.spool_dir / ".handoff.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.adopter = OrphanAdopter(
            self.config.server.spool_dir, manager.messages.__contains__, manager.submit
        )
        self.handoff = HandoffServer(path, manager.submit, adopt=self._adopt)
        await self.handoff.start()
        # The receivers' per-client limits, AUTH failures and user rates live here.
        self.throttle_server = ThrottleServer(str(self.config.server.spool_dir / ".throttle.sock"))
        await self.throttle_server.start()
        self.receivers = ReceiverPool(count, self._spawn_receiver)
        self.receivers.start()
        await self._wait_receivers_ready(self.handoff, self.receivers)
        self.receivers.supervise()

    def _adopt(self) -> None:
        if not self.recovered:  # every spool file looks unscheduled until then
            self.adopt_requested = True
            return
        self.adopt_requested = False
        if self.adopter is not None and not self.stop_requested.is_set():
            self.adopter.request()

    def _spawn_receiver(self, index: int) -> subprocess.Popen[bytes]:
        assert self.handoff is not None
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outrider.runtime.receiver_process",
                "--config",
                self.config_path,
                "--handoff",
                self.handoff.path,
                "--throttle",
                self.throttle_server.path if self.throttle_server is not None else "",
                "--index",
                str(index),
                "--log-level",
                logging.getLevelName(logging.getLogger().level),
            ]
        )

    async def _wait_receivers_ready(self, handoff: HandoffServer, pool: ReceiverPool) -> None:
        """Return once every receiver has said it listens; fail if one dies first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            pool.poll(handoff.ready_pids)  # ReceiversFailed (a RuntimeError) if one died
            if pool.all_ready():
                return
            if loop.time() > deadline:
                raise RuntimeError("receiver processes did not start listening in time")
            handoff.ready_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handoff.ready_changed.wait(), 0.1)

    async def _supervise(self, pool: ReceiverPool) -> None:
        """Replace dead receivers; stop the daemon, exit status 1, when none can be kept."""
        assert self.handoff is not None
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            try:
                pool.poll(self.handoff.ready_pids)
            except ReceiversFailed as exc:
                log.error("%s; stopping", exc)
                self.exit_code = 1
                self.stop_requested.set()
                return

    async def _stop_receivers(self, timeout: float) -> None:
        if self.receivers is not None:
            await self.receivers.stop(timeout)

    # -- reload -----------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP."""
        self.apply_reload()

    def apply_reload(self) -> dict[str, Any]:
        """Load the config file again and apply it (``outrider reload``, SIGHUP): the
        reply says whether it was accepted, with every problem when it was not, and
        what needs a restart. systemd hears RELOADING=1 and then READY=1 either way."""
        sd_notify.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
            sd_notify.ready("reload refused (invalid config); the running config stays")
            problems = "\n".join(str(p) for p in exc.problems)
            return {"ok": False, "error": f"reload refused, the running config stays:\n{problems}"}
        except OSError as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
            sd_notify.ready("reload refused (config unreadable); the running config stays")
            return {"ok": False, "error": f"{self.config_path}: cannot read: {exc.strerror}"}
        reconfigure_logging(settings_for(new.server, DELIVERY))
        warnings: list[str] = []
        self.config = new
        try:
            self.directory = LiveDirectory(new)
        except AliasError as exc:  # changed since the config was checked: keep the old
            log.error("reload: local domains: %s; the previous ones stay in force", exc)
        self.delivery.directory = self.directory.current
        if self.delivery.lists is not None:
            self.delivery.lists.directory = self.directory.current
        self.delivery.update_config(new)
        self.feedback.secrets = verp_secrets(new)
        self.feedback.hostname = new.server.hostname
        self.manager.update_config(new)
        self.accounting.configure(new.accounting)
        self.auto_suppress.enabled = new.suppression.auto_add
        self.webhooks.configure(new)
        reconfigure_notice_intake(self.notice_intake, new)
        reconfigure_notice_intake(self.list_intake, new)
        reconfigure_intake(self.api_intake, new, None)
        if self.receivers is not None:
            # The receivers hold the listeners: each applies the config and logs what
            # needs a restart. (This process has none, so it would call all of them new.)
            self.receivers.reload()
        elif self.intake is not None:
            warnings = reload_listeners(self.listeners, new, intake=self.intake)
            for warning in warnings:
                log.warning("reload: %s", warning)
        if new.suppression.file != self.suppression.path:
            warnings.append("[suppression] file: changed; takes effect at the next restart")
            log.warning("reload: %s", warnings[-1])
        log.info("configuration reloaded from %s", self.config_path)
        sd_notify.ready(f"configuration reloaded from {self.config_path}")
        return {"ok": True, "config": self.config_path, "warnings": warnings}

    # -- pid file ---------------------------------------------------------------------------
    def _write_pid_file(self) -> None:
        path = self.config.server.pid_file
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{os.getpid()}\n")

    def _remove_pid_file(self) -> None:
        path = self.config.server.pid_file
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def stop_unclean(
    *, recovered: bool, settled: bool, notices_done: bool, tasks_left: int, write_failures: int
) -> str:
    """Why a stop leaves no schedule snapshot ("" when it may write one): in each case
    memory may hold states the spool files do not (or recovery had not read them all)."""
    if not recovered:
        return "the spool's recovery had not finished"
    if not settled:
        return "deliveries had to be cancelled"
    if not notices_done:
        return "notices were still being stored"
    if tasks_left:
        return f"{tasks_left} task(s) still running"
    if write_failures:
        return f"{write_failures} spool write(s) failed"
    return ""


def nameserver_specs(config: Config) -> list[str] | None:
    """The resolver's nameserver strings; None (system resolver) only when none are set."""
    servers = config.dns.nameservers
    if not servers:
        return None
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in servers]


def run_daemon(config_path: str | Path, config: Config | None = None) -> int:
    """Entry point of ``outrider run`` (given the config it loaded to set up logging):
    returns the process exit code."""
    from outrider.runtime.loop import run

    if config is None:
        config = load_config(config_path)

    async def main() -> int:
        return await Daemon(config_path, config).run()

    return run(main())
