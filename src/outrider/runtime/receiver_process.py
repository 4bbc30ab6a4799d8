"""A receiver process: SMTP listeners sharing the port (SO_REUSEPORT) with its siblings.

Its intake stores each message in the shared spool (fsynced before the 250) and hands
the envelope to the delivery process: the same intake as the daemon's, with the
hand-off as its sink. Its per-client limits, AUTH failure counts and per-user rates
live in the delivery process (:mod:`outrider.throttle.remote`), shared with its
siblings. Started by the daemon with
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
from outrider.config.model import Config
from outrider.runtime.handoff import HandoffClient
from outrider.runtime.listeners import SharedLimits, open_inbound, reload_listeners
from outrider.runtime.logs import reconfigure_logging, settings_for, setup_logging
from outrider.spool.disk import DiskSpool
from outrider.throttle.remote import RemoteThrottle

log = logging.getLogger("outrider.receiver")

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to kill us when the daemon dies, so a crash leaves no orphans."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def serve(
    config_path: str,
    handoff_path: str,
    throttle_path: str = "",
    config: Config | None = None,
    process: str = "receiver-0",
) -> int:
    config = config or load_config(config_path)
    spool = DiskSpool(config.server.spool_dir)
    handoff = await HandoffClient.connect(handoff_path)
    shared = None
    throttle = None
    if throttle_path:
        throttle = RemoteThrottle(throttle_path)
        await throttle.connect()
        shared = SharedLimits(throttle, max(1, config.server.receiver_processes))
    auth_throttle = None
    if config.cluster.redis is not None:  # failed AUTH counted across the nodes
        from outrider.cluster.build import open_auth_throttle

        auth_throttle = await open_auth_throttle(config.cluster)
    intake, listeners = open_inbound(
        config,
        spool=spool,
        sink=handoff,
        reuse_port=True,
        shared=shared,
        auth_throttle=auth_throttle,
    )
    for listener in listeners:
        await listener.start()

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
        reconfigure_logging(settings_for(new.server, process))
        for warning in reload_listeners(listeners, new, intake=intake):
            log.warning("reload: %s", warning)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    # Only now: the daemon passes SIGHUP on once we are ready, and before the handler
    # is installed a SIGHUP would kill this process.
    handoff.send_ready()

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
    if throttle is not None:
        await throttle.close()
    if auth_throttle is not None:
        await auth_throttle.close()
    await spool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outrider-receiver")
    parser.add_argument("--config", required=True)
    parser.add_argument("--handoff", required=True)
    parser.add_argument("--throttle", default="")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    die_with_parent()
    process = f"receiver-{args.index}"
    started = time.monotonic()
    try:
        # The daemon's log format and file, read from the same config.
        config = load_config(args.config)
        setup_logging(args.log_level, settings_for(config.server, process))
        from outrider.runtime.loop import run

        return run(serve(args.config, args.handoff, args.throttle, config, process))
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
