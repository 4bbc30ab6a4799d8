"""systemd's readiness protocol (sd_notify(3)), without libsystemd.

A unit with ``Type=notify`` passes ``$NOTIFY_SOCKET``, a Unix datagram socket (a path, or
an abstract name written with a leading ``@``); the service sends newline-separated
``KEY=value`` assignments to it: ``READY=1`` once it serves, ``RELOADING=1`` with
``MONOTONIC_USEC=`` when a reload starts and ``READY=1`` again when it is done,
``STOPPING=1`` when it begins to stop, ``STATUS=`` a line for ``systemctl status``.
Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. A message that
cannot be sent is logged at debug level and otherwise ignored: readiness reporting
never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("outrider.daemon")


def notify(*assignments: str) -> bool:
    """Send ``KEY=value`` lines to ``$NOTIFY_SOCKET``; True when a datagram went out."""
    address = socket_address(os.environ.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    payload = "\n".join(assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def socket_address(value: str) -> str | bytes | None:
    """The socket address named by ``$NOTIFY_SOCKET``: a path, ``@name`` for the abstract
    namespace (a leading NUL byte), or None when unset or of another kind (systemd's
    ``vsock:`` addresses are for virtual machines)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={_one_line(status)}")


def reloading() -> bool:
    """A reload starts; systemd wants the time it started on CLOCK_MONOTONIC."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")


def stopping(status: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={_one_line(status)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
