"""Memory of the real daemon under big messages: N concurrent M MB messages, relayed.

Usage: python bench/big_messages.py [--messages 8] [--size-mb 40] [--chunking]
                                    [--receivers N] [--timeout 600]

Starts ``outrider run`` (shipped defaults apart from the listener, the route and the
paths: uvloop, receiver processes) in a temp dir under ``BENCH_TMPDIR`` (default
/var/tmp: the spool fsyncs, so use a real disk), and a loopback sink in a subprocess
that reads each message as it streams and keeps nothing but a running digest. N
threads send one message each with smtplib at the same time; every message is routed
to the sink. The daemon's total RSS (its process and every descendant, ``VmRSS`` from
``/proc``, children found through ``/proc/<pid>/task/*/children``) is sampled every
50 ms and printed before the run, at its peak and after the last message reached the
sink (and again after 2 s), with the wall time from the first connection to the last
delivery. The sink checks that each message arrived whole: the daemon only prepends
its Received field, so the delivered content from the first ``From:`` line on must be
the octets sent.

Stops what it started by PID (the daemon with SIGTERM, the sink with SIGKILL) and
removes its temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_EVERY = 0.05
LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\r\n"
DOT_LINE = b".a line that starts with a period, stuffed on the wire\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(index: int, size: int) -> bytes:
    """About ``size`` octets of CRLF text; some lines start with a period."""
    head = (
        f"From: bench@sender.test\r\nTo: rcpt@bench.test\r\n"
        f"Subject: big message {index}\r\nMessage-ID: <big{index}@sender.test>\r\n\r\n"
    ).encode()
    block = LINE * 63 + DOT_LINE
    body = block * max(1, (size - len(head)) // len(block))
    return head + body


# --- RSS ----------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


def rss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def total_rss(pid: int) -> int:
    """KiB resident in ``pid`` and all its descendants."""
    return sum(rss_kib(p) for p in [pid, *descendants(pid)])


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, total_rss(self.pid))
            self.stop.wait(SAMPLE_EVERY)


# --- the sink (runs in its own process) ----------------------------------------------------


class _SinkConnection(asyncio.Protocol):
    """Streams each message through a digest; prints ``DELIVERED <size> <sha256>``, the
    digest taken from the first ``From:`` line on (the daemon prepends its Received
    field)."""

    def __init__(self) -> None:
        self.buf = b""
        self.mode = "command"
        self.size = 0
        self.head = b""  # until the first From: line is seen
        self.digest: hashlib._Hash | None = None
        self.bdat_left = 0
        self.bdat_last = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"220 sink.bench.test ESMTP\r\n")  # type: ignore[attr-defined]

    def _content(self, data: bytes) -> None:
        self.size += len(data)
        if self.digest is not None:
            self.digest.update(data)
            return
        self.head += data
        start = self.head.find(b"\r\nFrom: ")
        if start >= 0:
            self.digest = hashlib.sha256(self.head[start + 2 :])
            self.head = b""

    def _done(self) -> bytes:
        digest = self.digest.hexdigest() if self.digest is not None else "-"
        print(f"DELIVERED {self.size} {digest}", flush=True)
        self.size, self.head, self.digest = 0, b"", None
        return b"250 2.0.0 OK\r\n"

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        out: list[bytes] = []
        while self.buf:
            if self.mode == "data":
                # The buffer starts with a line's CRLF: every line start in a piece taken
                # follows a CRLF in that piece, so neither "\r\n.." nor the terminator is
                # ever split between two pieces.
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    cut = self.buf.rfind(b"\r\n")
                    if cut > 0:
                        self._content(self.buf[:cut].replace(b"\r\n..", b"\r\n."))
                        self.buf = self.buf[cut:]
                    break
                self._content(self.buf[: end + 2].replace(b"\r\n..", b"\r\n."))
                self.buf = self.buf[end + 5 :]
                self.mode = "command"
                out.append(self._done())
            elif self.mode == "bdat":
                take = self.buf[: self.bdat_left]
                self._content(take)
                self.buf = self.buf[len(take) :]
                self.bdat_left -= len(take)
                if self.bdat_left:
                    break
                self.mode = "command"
                out.append(self._done() if self.bdat_last else b"250 2.0.0 chunk\r\n")
            else:
                nl = self.buf.find(b"\r\n")
                if nl < 0:
                    break
                line, self.buf = self.buf[:nl], self.buf[nl + 2 :]
                out.append(self._command(line))
        if out:
            self.transport.write(b"".join(out))

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            ext = b"250-CHUNKING\r\n" if CHUNKING else b""
            return b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n" + ext + b"250 SIZE 0\r\n"
        if verb == b"DATA":
            self.mode = "data"
            self.buf = b"\r\n" + self.buf  # the DATA line's end (see data_received)
            self.size = -2
            return b"354 go ahead\r\n"
        if verb == b"BDAT":
            parts = line.split()
            self.bdat_left = int(parts[1])
            self.bdat_last = len(parts) > 2
            self.mode = "bdat"
            return b""
        if verb == b"QUIT":
            assert self.transport is not None
            self.transport.write(b"221 2.0.0 bye\r\n")
            self.transport.close()
            return b""
        return b"250 2.0.0 OK\r\n"


CHUNKING = False


def run_sink(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkConnection, "127.0.0.1", port)
        print("READY", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- the daemon -----------------------------------------------------------------------------

CONFIG = """
[server]
hostname = "bench.outrider.test"
spool-dir = "{tmp}/spool"
log-dir = "{tmp}/log"
state-dir = "{tmp}/state"
{receivers}
[dns]
nameservers = ["127.0.0.1:{dns_port}"]  # unused: the only destination is routed

[[listener]]
address = "127.0.0.1:{port}"
relay-networks = ["127.0.0.0/8"]
max-message-size = "{max_size}"

[domain."bench.test"]
route = "127.0.0.1:{sink_port}"
"""


def wait_greeting(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(512).startswith(b"220"):
                return
        time.sleep(0.1)
    raise SystemExit("daemon not listening")


def send_one(port: int, data: bytes, errors: list[str]) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
            client.sendmail("bench@sender.test", ["rcpt@bench.test"], data)
    except Exception as exc:  # reported, not raised: the figures say what happened
        errors.append(repr(exc))


def mib(kib: int) -> str:
    return f"{kib / 1024:8.1f} MiB"


def main() -> int:
    global CHUNKING
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=40.0)
    parser.add_argument("--chunking", action="store_true", help="the sink offers CHUNKING")
    parser.add_argument("--receivers", type=int, default=None, help="default: shipped default")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    CHUNKING = args.chunking
    if args.sink:
        run_sink(args.sink)
        return 0

    size = int(args.size_mb * 1024 * 1024)
    messages = [message(i, size) for i in range(args.messages)]
    expected = {hashlib.sha256(m).hexdigest() for m in messages}

    parent = Path(os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    tmp = Path(tempfile.mkdtemp(prefix="outrider-big-", dir=parent))
    port, sink_port = free_port(), free_port()
    receivers = "" if args.receivers is None else f"receiver-processes = {args.receivers}"
    config = tmp / "outrider.toml"
    config.write_text(
        CONFIG.format(
            tmp=tmp,
            receivers=receivers,
            dns_port=free_port(),
            port=port,
            sink_port=sink_port,
            max_size=f"{int(args.size_mb * 1.1) + 1}M",
        )
    )
    sink_cmd = [sys.executable, __file__, "--sink", str(sink_port)]
    if args.chunking:
        sink_cmd.append("--chunking")
    sink = subprocess.Popen(sink_cmd, stdout=subprocess.PIPE)
    daemon: subprocess.Popen[bytes] | None = None
    delivered: list[tuple[float, int, str]] = []
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != b"READY":
            raise SystemExit("sink did not start")

        def read_sink() -> None:
            assert sink.stdout is not None
            for line in sink.stdout:
                parts = line.split()
                if parts and parts[0] == b"DELIVERED":
                    delivered.append((time.monotonic(), int(parts[1]), parts[2].decode()))

        threading.Thread(target=read_sink, daemon=True).start()
        log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - the daemon's for its lifetime
        daemon = subprocess.Popen(
            [sys.executable, "-m", "outrider", "run", "-c", str(config)],
            cwd=tmp,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_greeting(port, daemon)
        time.sleep(2.0)  # receivers and the delivery process settle
        before = total_rss(daemon.pid)
        processes = 1 + len(descendants(daemon.pid))
        sampler = Sampler(daemon.pid)
        sampler.start()

        errors: list[str] = []
        start = time.monotonic()
        threads = [
            threading.Thread(target=send_one, args=(port, data, errors)) for data in messages
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.timeout)
        accepted = time.monotonic() - start
        deadline = start + args.timeout
        while len(delivered) < len(messages) - len(errors) and time.monotonic() < deadline:
            time.sleep(0.05)
        done = (delivered[-1][0] - start) if delivered else float("nan")
        after = total_rss(daemon.pid)
        time.sleep(2.0)
        settled = total_rss(daemon.pid)
        sampler.stop.set()
        sampler.join()
        peak = max(sampler.peak, after)

        intact = sum(1 for _, _, digest in delivered if digest in expected)
        print(
            f"{args.messages} x {args.size_mb:g} MB, concurrent, "
            f"{'BDAT' if args.chunking else 'DATA'} to the sink; daemon: {processes} processes"
        )
        print(f"RSS before      {mib(before)}")
        print(f"RSS peak        {mib(peak)}  (growth {mib(peak - before).strip()})")
        print(f"RSS after       {mib(after)}  (growth {mib(after - before).strip()})")
        print(f"RSS after +2 s  {mib(settled)}  (growth {mib(settled - before).strip()})")
        print(f"all accepted    {accepted:8.2f} s")
        print(f"all delivered   {done:8.2f} s  ({len(delivered)}/{len(messages)}, {intact} intact)")
        for error in errors:
            print(f"send error: {error}")
        return 0 if intact == len(messages) and not errors else 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if sink.poll() is None:
            sink.kill()
            sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
