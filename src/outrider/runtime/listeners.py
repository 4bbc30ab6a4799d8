"""Build inbound listeners from the configuration (shared by the daemon and receiver processes)."""

from __future__ import annotations

from collections.abc import Callable

from outrider.config.model import Config, ListenerSettings
from outrider.inbound.receiver import Listener, open_listening_socket
from outrider.inbound.session import ListenerContext, StoreMessage
from outrider.smtp.server import ServerConfig


def listener_name(settings: ListenerSettings) -> str:
    host, port = settings.address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listener_context(
    settings: ListenerSettings,
    config: Config,
    *,
    store: StoreMessage,
    new_queue_id: Callable[[], str],
) -> ListenerContext:
    return ListenerContext(
        name=listener_name(settings),
        protocol_config=ServerConfig(
            hostname=config.server.hostname,
            max_message_size=settings.max_message_size,
            max_recipients=settings.max_rcpt_per_message,
            max_errors=settings.max_errors,
            banner=settings.banner,
        ),
        relay_networks=tuple(settings.relay_networks),
        relay_domains=config.relay.domains,
        store=store,
        new_queue_id=new_queue_id,
        command_timeout=settings.command_timeout,
        data_timeout=settings.data_timeout,
    )


def open_listeners(
    config: Config,
    *,
    store: StoreMessage,
    new_queue_id: Callable[[], str],
    reuse_port: bool,
) -> list[Listener]:
    listeners: list[Listener] = []
    try:
        for settings in config.listeners:
            host, port = settings.address
            sock = open_listening_socket(host, port, reuse_port=reuse_port)
            ctx = listener_context(settings, config, store=store, new_queue_id=new_queue_id)
            listeners.append(Listener(ctx, sock))
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


def reload_listeners(
    listeners: list[Listener],
    config: Config,
    *,
    store: StoreMessage,
    new_queue_id: Callable[[], str],
) -> list[str]:
    """Apply a new config to running listeners; returns warnings for what needs a restart."""
    warnings: list[str] = []
    by_name = {listener.ctx.name: listener for listener in listeners}
    wanted = {listener_name(s): s for s in config.listeners}
    for name, settings in wanted.items():
        listener = by_name.get(name)
        if listener is None:
            warnings.append(f"new listener {name} needs a restart to take effect")
            continue
        listener.update(listener_context(settings, config, store=store, new_queue_id=new_queue_id))
    for name in by_name.keys() - wanted.keys():
        warnings.append(f"removed listener {name} keeps listening until a restart")
    return warnings
