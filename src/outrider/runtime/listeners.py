"""Build inbound listeners from the configuration (shared by the daemon and receiver processes).

A listener's role decides what its sessions demand:

* ``mx``: mail for relay.domains from anyone; relaying only for relay-networks or
  authenticated clients; clients outside relay-networks wait :data:`PREGREET_DELAY`
  for the greeting and are dropped if they talk first.
* ``submission`` / ``submissions``: AUTH before MAIL (when ``auth`` is on, the
  default), the sender must belong to the user, missing Date/Message-ID are added.

Every listener of a process hands its messages to the process's one
:class:`~outrider.intake.Intake` (built here by :func:`open_inbound`); the daemon and
the receiver processes differ only by the intake's sink.

Reload (SIGHUP) rebuilds every context and reconfigures the intake: certificates are
re-read from disk, and the connection gate and the AUTH throttle are updated in place
so their per-client state survives. Switching a listener to or from implicit TLS needs
a restart (its socket does the TLS).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from outrider.auth.rates import UserRateLimiter
from outrider.auth.sasl import mechanisms_for
from outrider.auth.secret import SecretError, UnknownUserSalts
from outrider.auth.store import UserStore, UserStoreError
from outrider.auth.throttle import AuthThrottle
from outrider.config.model import Config, ListenerSettings
from outrider.inbound.limits import ConnectionGate
from outrider.inbound.receiver import Listener, open_listening_socket
from outrider.inbound.session import PREGREET_DELAY, ListenerContext
from outrider.inbound.tls import TlsError, server_context
from outrider.intake import Intake, Sink
from outrider.intake.build import build_intake, reconfigure_intake
from outrider.intake.core import MessageStore
from outrider.smtp.server import ServerConfig
from outrider.throttle import Throttle

log = logging.getLogger("outrider.inbound")

SUBMISSION_ROLES = ("submission", "submissions")


def listener_name(settings: ListenerSettings) -> str:
    host, port = settings.address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_context(settings: ListenerSettings) -> ssl.SSLContext | None:
    """The listener's SSL context, freshly loaded from its files; None without TLS."""
    if settings.tls == "none":
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise TlsError(f"listener {listener_name(settings)}: tls needs tls-cert and tls-key")
    return server_context(settings.tls_cert, settings.tls_key, min_version=settings.tls_min_version)


def listener_context(
    settings: ListenerSettings,
    config: Config,
    *,
    intake: Intake,
    users: UserStore | None = None,
    previous: ListenerContext | None = None,
    tls: ssl.SSLContext | None = None,
    shared: SharedLimits | None = None,
    auth_throttle: Throttle | None = None,
) -> ListenerContext:
    """``previous``: the running context on reload (its gate and throttle are kept).
    ``tls``: an already loaded context; by default it is loaded from the files.
    ``shared``: where receiver processes keep their common limit state.
    ``auth_throttle``: where failed-AUTH counts live when not there ([cluster]: Redis)."""
    if tls is None:
        tls = tls_context(settings)
    auth = settings.auth and users is not None
    protocol_config = ServerConfig(
        hostname=config.server.hostname,
        max_message_size=settings.max_message_size,
        max_recipients=settings.max_rcpt_per_message,
        max_errors=settings.max_errors,
        banner=settings.banner,
        starttls=settings.tls == "starttls",
        auth_mechanisms=tuple(mechanisms_for(users)) if auth and users is not None else (),
        auth_plaintext=settings.allow_plaintext_auth,
        require_auth=auth and settings.role in SUBMISSION_ROLES,
        max_connection_messages=settings.max_messages_per_connection,
        max_connection_recipients=settings.max_rcpt_per_connection,
        auth_lifts_connection_limits=settings.limits_exempt_authenticated,
    )
    return ListenerContext(
        name=listener_name(settings),
        protocol_config=protocol_config,
        relay_networks=tuple(settings.relay_networks),
        intake=intake,
        command_timeout=settings.command_timeout,
        data_timeout=settings.data_timeout,
        role=settings.role,
        tls=tls,
        implicit_tls=settings.tls == "implicit",
        users=users if auth else None,
        throttle=_throttle(settings, previous, shared, auth_throttle) if auth else None,
        gate=_gate(settings, previous, shared),
        greeting_delay=PREGREET_DELAY if settings.role == "mx" else 0.0,
        limits_exempt_trusted=settings.limits_exempt_relay_networks,
        add_missing_headers=settings.add_missing_headers,
        honour_vmta_header=settings.process_x_virtual_mta,
        listener_vmta=settings.default_virtual_mta,
    )


@dataclass(frozen=True, slots=True)
class SharedLimits:
    """The limit state receiver processes share (:mod:`outrider.throttle.remote`).
    ``processes``: how many receivers share the listeners; each counts its own
    connections against ``max-connections / processes`` (rounded up), since the total
    protects this machine and the kernel spreads connections evenly over them."""

    throttle: Throttle
    processes: int


def _gate(
    settings: ListenerSettings, previous: ListenerContext | None, shared: SharedLimits | None
) -> ConnectionGate:
    total = settings.max_connections
    if shared is not None and total:
        total = -(-total // max(1, shared.processes))
    if previous is not None and previous.gate is not None:
        previous.gate.update(
            max_connections=total,
            max_per_client=settings.max_connections_per_client,
            rate_per_client=settings.max_connect_rate_per_client,
        )
        return previous.gate
    return ConnectionGate(
        max_connections=total,
        max_per_client=settings.max_connections_per_client,
        rate_per_client=settings.max_connect_rate_per_client,
        throttle=shared.throttle if shared is not None else None,
        namespace=f"gate {listener_name(settings)} ",
    )


def _throttle(
    settings: ListenerSettings,
    previous: ListenerContext | None,
    shared: SharedLimits | None,
    auth_throttle: Throttle | None = None,
) -> AuthThrottle:
    throttle = previous.throttle if previous is not None else None
    if throttle is None:
        state = auth_throttle or (shared.throttle if shared is not None else None)
        return AuthThrottle(
            max_failures=settings.auth_max_failures,
            window=settings.auth_failure_window,
            block_time=settings.auth_block_time,
            first_delay=settings.auth_failure_delay,
            max_concurrent=settings.auth_max_concurrent_per_client,
            throttle=state,
            # [cluster]: one client's failures count on every listener of every node
            namespace="auth cluster " if auth_throttle else f"auth {listener_name(settings)} ",
        )
    throttle.max_failures = settings.auth_max_failures
    throttle.window = settings.auth_failure_window
    throttle.block_time = settings.auth_block_time
    throttle.first_delay = settings.auth_failure_delay
    throttle.max_concurrent = settings.auth_max_concurrent_per_client
    return throttle


def user_store(config: Config, listeners: Sequence[Listener] = ()) -> UserStore | None:
    """The process's user store, when a listener uses AUTH; reused across reloads."""
    if not any(settings.auth for settings in config.listeners):
        return None
    path = config.auth.users_file
    for listener in listeners:
        users = listener.ctx.users
        if isinstance(users, UserStore) and users.path == path:
            return users
    try:
        salts = UnknownUserSalts.from_state_dir(config.server.state_dir)
        return UserStore(path, unknown_salts=salts)
    except (UserStoreError, SecretError) as exc:
        raise RuntimeError(str(exc)) from exc


def open_inbound(
    config: Config,
    *,
    spool: MessageStore,
    sink: Sink,
    reuse_port: bool,
    shared: SharedLimits | None = None,
    auth_throttle: Throttle | None = None,
) -> tuple[Intake, list[Listener]]:
    """The process's intake and its listeners; a bad certificate or users file fails
    the start. ``sink``: where stored messages go (the scheduler, or the hand-off);
    ``shared``: the limit state common to the receiver processes (None: this process's)."""
    users = user_store(config)
    rates = None
    if shared is not None:
        rates = UserRateLimiter(throttle=shared.throttle, namespace="user-rate ")
    intake = build_intake(config, spool=spool, sink=sink, users=users, rates=rates)
    listeners = open_listeners(
        config,
        intake=intake,
        users=users,
        reuse_port=reuse_port,
        shared=shared,
        auth_throttle=auth_throttle,
    )
    return intake, listeners


def open_listeners(
    config: Config,
    *,
    intake: Intake,
    users: UserStore | None,
    reuse_port: bool,
    shared: SharedLimits | None = None,
    auth_throttle: Throttle | None = None,
) -> list[Listener]:
    """Open every configured listener; a bad certificate fails the start."""
    listeners: list[Listener] = []
    try:
        for settings in config.listeners:
            ctx = listener_context(
                settings,
                config,
                intake=intake,
                users=users,
                shared=shared,
                auth_throttle=auth_throttle,
            )
            host, port = settings.address
            try:
                sock = open_listening_socket(host, port, reuse_port=reuse_port)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {listener_name(settings)}: {exc.strerror}"
                ) from exc
            listeners.append(Listener(ctx, sock))
    except TlsError as exc:
        for listener in listeners:
            listener.sock.close()
        raise RuntimeError(str(exc)) from exc
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


def check_addresses_free(config: Config) -> None:
    """Fail if a listen address is taken, before receiver processes share it with
    SO_REUSEPORT: a bind with SO_REUSEPORT would silently share the port with another
    daemon (or anything else of this user that set it) and split its traffic."""
    for settings in config.listeners:
        host, port = settings.address
        try:
            open_listening_socket(host, port, reuse_port=False).close()
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {listener_name(settings)}: {exc.strerror}"
            ) from exc


def reload_listeners(
    listeners: list[Listener],
    config: Config,
    *,
    intake: Intake | None,
) -> list[str]:
    """Apply a new config to running listeners and their intake; returns warnings for
    what needs a restart or could not be applied (a certificate that does not load keeps
    the old one). ``intake`` is None in a daemon whose listeners are in receivers."""
    warnings: list[str] = []
    try:
        users = user_store(config, listeners)
    except RuntimeError as exc:
        warnings.append(f"{exc}; keeping the previous users file")
        stores = (lst.ctx.users for lst in listeners if isinstance(lst.ctx.users, UserStore))
        users = next(stores, None)
    if intake is not None:
        reconfigure_intake(intake, config, users)
    by_name = {listener.ctx.name: listener for listener in listeners}
    wanted = {listener_name(s): s for s in config.listeners}
    for name, settings in wanted.items():
        listener = by_name.get(name)
        if listener is None:
            warnings.append(f"new listener {name} needs a restart to take effect")
            continue
        previous = listener.ctx
        if (settings.tls == "implicit") != listener.implicit_tls:  # the socket does it
            warnings.append(
                f"listener {name}: switching implicit TLS on or off needs a restart;"
                " it keeps its previous settings"
            )
            continue
        try:
            tls = tls_context(settings)
        except TlsError as exc:
            if previous.tls is None:
                warnings.append(f"{exc}; listener {name} keeps its previous settings")
                continue
            warnings.append(f"{exc}; listener {name} keeps its previous certificate")
            tls = previous.tls
        listener.update(
            listener_context(
                settings,
                config,
                intake=previous.intake,
                users=users,
                previous=previous,
                tls=tls,
            )
        )
        if tls is not None and tls is not previous.tls:
            log.info("listener %s: TLS certificate loaded from %s", name, settings.tls_cert)
    for name in by_name.keys() - wanted.keys():
        warnings.append(f"removed listener {name} keeps listening until a restart")
    return warnings
