"""kill -9 during Maildir delivery: ``new/`` only ever holds complete messages.

A child process delivers numbered messages into one Maildir in a loop and says after
each 250; it is killed with SIGKILL at a random moment, again and again. Afterwards
every file in ``new/`` must be a complete message (what the Maildir spec promises; a
partial file may only be left in ``tmp/``), no message reported delivered may be
missing, and at most one per kill may be there unreported (delivered, not yet said:
the at-least-once the spec allows).
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

KILLS = 30
TIME_LIMIT = 90.0  # seconds for the whole loop, whatever the machine's load

CHILD = r"""
import asyncio, sys
from outrider.delivery.maildir_transport import MaildirConnection, MaildirSettings, MaildirTransport
from outrider.message.envelope import Envelope, Recipient

def body(seq):
    return b"Subject: %d\r\n\r\n" % seq + b"%d crash test line\r\n" % seq * 12000

async def main(root, start):
    transport = MaildirTransport(MaildirSettings(path=root + "/{user}/Maildir", hostname="crash"))
    conn = MaildirConnection(transport)
    print("READY", flush=True)
    seq = start
    while True:
        env = Envelope("Q%d" % seq, "s@x.test", [Recipient("box@local.test")], 0.0)
        report = await conn.deliver(env, env.recipients, body(seq))
        assert report.replies[0].reply.code == 250, report.replies[0].reply
        print("D", seq, flush=True)
        seq += 1

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def expected(seq: int) -> bytes:
    body = b"Subject: %d\r\n\r\n" % seq + b"%d crash test line\r\n" % seq * 12000
    head = b"Return-Path: <s@x.test>\nDelivered-To: box@local.test\n"
    return head + body.replace(b"\r\n", b"\n")


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the child said nothing"
    return proc.stdout.readline()


def test_kill_9_never_leaves_a_partial_file_in_new(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    box = root / "box" / "Maildir"
    rng = random.Random()
    reported: set[int] = set()
    kills = 0
    tmp_left = 0
    seq = 0
    checked: set[str] = set()
    started = time.monotonic()
    while kills < KILLS and time.monotonic() - started < TIME_LIMIT:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(seq)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            line = read_line(proc, 30)
            assert line == b"READY\n", (line, proc.stderr.read() if proc.stderr else b"")
            time.sleep(rng.uniform(0.01, 0.25))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        kills += 1
        assert proc.returncode == -signal.SIGKILL, err.decode()
        said = [int(n) for n in re.findall(rb"^D (\d+)$", out, re.M)]
        reported.update(said)
        # Never reuse a number: the one in flight when the kill came may be in new/.
        seq = max([seq - 1, *said]) + 2
        if (box / "tmp").is_dir() and os.listdir(box / "tmp"):
            tmp_left += 1
        for name in set(os.listdir(box / "new") if (box / "new").is_dir() else []) - checked:
            checked.add(name)
            content = (box / "new" / name).read_bytes()
            number = int(content.split(b"Subject: ", 1)[1].split(b"\n", 1)[0])
            assert content == expected(number), f"partial or damaged file in new/: {name}"
            assert name.endswith(f",S={len(content)}"), f"unfinished name in new/: {name}"

    assert kills >= 10, f"only {kills} kills in {TIME_LIMIT} s"
    in_new = {
        int((box / "new" / n).read_bytes().split(b"Subject: ", 1)[1].split(b"\n", 1)[0])
        for n in os.listdir(box / "new")
    }
    assert len(in_new) == len(os.listdir(box / "new"))  # each message once
    assert reported <= in_new, f"reported delivered but missing: {sorted(reported - in_new)}"
    assert len(in_new - reported) <= kills
    assert reported, "no delivery completed between kills"
    assert tmp_left >= 1, "no kill landed in the middle of a delivery"
