"""HTTP injection of a merged campaign: recipients/s accepted and stored, and end to end.

Usage: python bench/inject_campaign.py [--recipients 10000] [--html-kb 8] [--timeout 600]
                                       [--requests 1]

Starts ``outrider run`` (shipped defaults apart from the listener, the HTTP listener,
the route and the paths) in a temp dir under ``BENCH_TMPDIR`` (default /var/tmp: the
spool fsyncs, so use a real disk) and a loopback SMTP sink in a subprocess that counts
what it receives. Then POSTs one ``/api/v1/messages`` request (or ``--requests``
equal parts) with N recipients, each with its own substitutions, a templated subject,
text and HTML body and a List-Unsubscribe header, and prints:

* the request time: every message rendered, built and stored (fsynced) when the reply
  comes, so N / request time is the rate accepted and stored;
* the end-to-end time from the POST until the sink has received all N messages.

Stops what it started by PID (the daemon with SIGTERM, the sink with SIGKILL) and
removes its temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

CONFIG = """
[server]
hostname = "bench.outrider.test"
spool-dir = "{tmp}/spool"
log-dir = "{tmp}/log"
state-dir = "{tmp}/state"

[dns]
nameservers = ["127.0.0.1:{dns_port}"]  # unused: the only destination is routed

[[listener]]
address = "127.0.0.1:{port}"

[http]
address = "127.0.0.1:{http_port}"
max-request-size = "64M"

[domain."bench.test"]
route = "127.0.0.1:{sink_port}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the sink (its own process): counts messages, prints one line each ---------------------


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.transport.write(b"220 sink.bench.test ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        self.buf += chunk
        out: list[bytes] = []
        while True:
            if self.data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buf = self.buf[end + 5 :]
                self.data = False
                out.append(b"250 2.0.0 ok\r\n")
                sys.stdout.write("D\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line, self.buf = self.buf[:end], self.buf[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                self.data = True
                self.buf = b"\r\n" + self.buf  # the terminator search needs the CRLF
                out.append(b"354 go\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            else:
                out.append(b"250 ok\r\n")
        if out:
            self.transport.write(b"".join(out))
            sys.stdout.flush()


def run_sink(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await server.serve_forever()

    asyncio.run(main())


# --- the campaign -------------------------------------------------------------------------


def campaign(first: int, count: int, html_kb: int) -> dict[str, Any]:
    # a newsletter: mostly fixed markup, a few merged fields
    paragraph = "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.</p>\n"
    html = (
        "<html><body><h1>Hello {{ first }}</h1>\n<p>{{ offer }}: use code {{ code }}.</p>\n"
        + paragraph * (html_kb * 1024 // len(paragraph))
        + '<p><a href="https://news.sender.test/u/{{ code }}">unsubscribe</a></p></body></html>'
    )
    return {
        "envelope_sender": "bounces@news.sender.test",
        "recipients": [
            {
                "email": f"reader{i}@bench.test",
                "name": f"Reader {i}",
                "substitutions": {"first": f"Reader{i}", "code": f"C{i:06d}"},
            }
            for i in range(first, first + count)
        ],
        "substitutions": {"offer": "two for one"},
        "content": {
            "from": {"email": "news@news.sender.test", "name": "News"},
            "subject": "{{ first }}, your code {{ code }}",
            "text_body": "Dear {{ name }},\n{{ offer }} with code {{ code }}.\n",
            "html_body": html,
            "headers": {"List-Unsubscribe": "<mailto:unsub@news.sender.test?subject={{ code }}>"},
        },
        "job_id": "bench",
    }


def post(port: int, body: bytes) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/messages",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        reply: dict[str, Any] = json.loads(resp.read())
    return reply


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit("HTTP listener not up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1, help="split into this many POSTs")
    parser.add_argument("--html-kb", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return 0

    parent = Path(os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    tmp = Path(tempfile.mkdtemp(prefix="outrider-inject-", dir=parent))
    http_port, sink_port = free_port(), free_port()
    config = tmp / "outrider.toml"
    config.write_text(
        CONFIG.format(
            tmp=tmp,
            dns_port=free_port(),
            port=free_port(),
            http_port=http_port,
            sink_port=sink_port,
        )
    )
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink", str(sink_port)], stdout=subprocess.PIPE
    )
    daemon: subprocess.Popen[bytes] | None = None
    received: list[float] = []
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != b"READY":
            raise SystemExit("sink did not start")

        def read_sink() -> None:
            assert sink.stdout is not None
            for line in sink.stdout:
                if line.startswith(b"D"):
                    received.append(time.monotonic())

        threading.Thread(target=read_sink, daemon=True).start()
        log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - the daemon's for its lifetime
        daemon = subprocess.Popen(
            [sys.executable, "-m", "outrider", "run", "-c", str(config)],
            cwd=tmp,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_http(http_port, daemon)
        per = -(-args.recipients // args.requests)
        bodies = [
            json.dumps(campaign(i, min(per, args.recipients - i), args.html_kb)).encode()
            for i in range(0, args.recipients, per)
        ]
        started = time.monotonic()
        accepted = 0
        for body in bodies:
            reply = post(http_port, body)
            accepted += reply["success_count"]
            if reply["failure_count"]:
                print("refused:", reply["errors"][:5])
        stored = time.monotonic() - started
        deadline = started + args.timeout
        while len(received) < args.recipients and time.monotonic() < deadline:
            time.sleep(0.05)
        end = (received[-1] if len(received) >= args.recipients else time.monotonic()) - started
        mb = sum(len(b) for b in bodies) / len(bodies) / 1e6
        print(
            f"recipients {args.recipients} in {len(bodies)} request(s) of {mb:.1f} MB, "
            f"html body {args.html_kb} KiB"
        )
        rate = accepted / stored
        print(f"accepted and stored: {accepted} in {stored:.2f} s = {rate:,.0f} recipients/s")
        print(
            f"end to end (POST to last message at the sink): {len(received)} in {end:.2f} s = "
            f"{len(received) / end:,.0f} messages/s"
        )
        return 0 if accepted == args.recipients and len(received) >= args.recipients else 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        sink.kill()
        sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
