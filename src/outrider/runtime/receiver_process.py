"""A receiver process: SMTP listeners sharing the port (SO_REUSEPORT) with its siblings.

It stores each message in the shared spool (fsynced before the 250) and hands the
envelope to the delivery process. Started by the daemon with
``python -m outrider.runtime.receiver_process``; it dies with its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
import time

from outrider.config.loader import ConfigError, load_config
from outrider.inbound.receiver import Listener
from outrider.message.envelope import Envelope
from outrider.message.ids import new_queue_id
from outrider.runtime.handoff import HandoffClient
from outrider.runtime.listeners import open_listeners, reload_listeners
from outrider.runtime.logs import setup_logging
from outrider.smtp.replies import Reply
from outrider.spool.base import SpoolError
from outrider.spool.disk import DiskSpool

log = logging.getLogger("outrider.receiver")

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to kill us when the daemon dies, so a crash leaves no orphans."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def serve(config_path: str, handoff_path: str) -> int:
    config = load_config(config_path)
    spool = DiskSpool(config.server.spool_dir)
    handoff = await HandoffClient.connect(handoff_path)

    async def store(envelope: Envelope, body: bytes) -> None:
        await spool.store(envelope, body)
        try:
            handoff.send(envelope, body)
        except ConnectionError as exc:
            # Stored durably already: the next start recovers it. Refuse new mail.
            raise SpoolError(
                "delivery process unavailable", Reply(451, "4.3.0", "Try again later")
            ) from exc

    listeners: list[Listener] = open_listeners(
        config, store=store, new_queue_id=new_queue_id, reuse_port=True
    )
    for listener in listeners:
        await listener.start()
    handoff.send_ready()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def reload() -> None:
        nonlocal config
        try:
            new = load_config(config_path)
        except (ConfigError, OSError) as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
            return
        config = new
        for warning in reload_listeners(listeners, new, store=store, new_queue_id=new_queue_id):
            log.warning("reload: %s", warning)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(1.0)
            for listener in listeners:
                listener.sweep_timeouts()

    sweep = loop.create_task(sweeper(), name="timeout-sweeper")
    await stop.wait()
    sweep.cancel()
    timeout = config.server.shutdown_timeout
    await asyncio.gather(*(listener.stop(timeout) for listener in listeners))
    await handoff.close()
    await spool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outrider-receiver")
    parser.add_argument("--config", required=True)
    parser.add_argument("--handoff", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    die_with_parent()
    setup_logging(args.log_level, process_tag=f"receiver-{args.index}")
    started = time.monotonic()
    try:
        from outrider.runtime.loop import run

        return run(serve(args.config, args.handoff))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 1
    finally:
        log.debug("receiver exiting after %.1fs", time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
