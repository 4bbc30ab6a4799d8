"""Maildir delivery into a temp directory, read back with Python's ``mailbox.Maildir``:
headers added, body octets intact (also a 2 MiB body streamed from a spool file),
unique names under concurrency, quota, bad mailbox names, file errors."""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import os
import random
import shutil
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outrider.config.loader import parse_config
from outrider.delivery.mailbox_path import BadMailbox, check_template, mailbox_path
from outrider.delivery.maildir import LfConverter, MaildirFile, maildir_usage, unique_name
from outrider.delivery.maildir_transport import (
    MAILDIR_HOST,
    MaildirConnection,
    MaildirSettings,
    MaildirTransport,
)
from outrider.delivery.transport import Route
from outrider.message.envelope import Envelope, Recipient
from outrider.spool.base import CorruptMessageError
from outrider.spool.reader import StoredBody
from tests.support.tmpfs import MountError, fill, mount_tmpfs

BODY = b"Subject: hello\r\nFrom: s@sender.test\r\n\r\nline one\r\n.dot line\r\nend\r\n"


def settings(root: Path, **kwargs: Any) -> MaildirSettings:
    return MaildirSettings(path=f"{root}/{{domain}}/{{user}}/Maildir", hostname="mx.test", **kwargs)


def envelope(*rcpts: str, sender: str = "s@sender.test") -> Envelope:
    return Envelope("Q1", sender, [Recipient(r) for r in rcpts], 0.0)


async def deliver(
    transport: MaildirTransport, env: Envelope, body: bytes | StoredBody
) -> list[tuple[str, int, str]]:
    report = await MaildirConnection(transport).deliver(env, env.recipients, body)
    assert report.remote_host == MAILDIR_HOST
    return [(r.recipient.address, r.reply.code, r.reply.enhanced) for r in report.replies]


def stored_body(tmp_path: Path, body: bytes) -> StoredBody:
    prefix = b"ENVELOPE-PREFIX\n"
    path = tmp_path / "spoolfile"
    path.write_bytes(prefix + body)
    return StoredBody("Q1", str(path), len(prefix), len(body), zlib.crc32(body))


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_delivers_with_return_path_and_delivered_to(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    transport = MaildirTransport(settings(root))
    env = envelope("Alice@Example.Test", "bob@example.test")
    assert await deliver(transport, env, BODY) == [
        ("Alice@Example.Test", 250, "2.0.0"),
        ("bob@example.test", 250, "2.0.0"),
    ]
    for user, rcpt in (("alice", "Alice@Example.Test"), ("bob", "bob@example.test")):
        box = root / "example.test" / user / "Maildir"
        [msg] = mailbox.Maildir(box, create=False)
        raw = msg.as_bytes()
        head = f"Return-Path: <s@sender.test>\nDelivered-To: {rcpt}\n".encode()
        assert raw.startswith(head)
        assert raw[len(head) :] == BODY.replace(b"\r\n", b"\n")
        [name] = os.listdir(box / "new")
        assert name.endswith(f",S={len(raw)}") and ".mx.test," in name
        assert os.listdir(box / "tmp") == []
        for directory in (box, box / "tmp", box / "new", box / "cur", box.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((box / "new" / name).stat().st_mode) == 0o600


async def test_crlf_mode_keeps_the_octets_and_null_sender(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    transport = MaildirTransport(settings(root, lf_line_endings=False))
    body = BODY + b"bare\rcr and 8bit \xc3\xa9\r\n"
    assert await deliver(transport, envelope("a@example.test", sender=""), body) == [
        ("a@example.test", 250, "2.0.0")
    ]
    [path] = files_under(root)
    assert path.read_bytes() == b"Return-Path: <>\r\nDelivered-To: a@example.test\r\n" + body


async def test_a_big_stored_body_is_streamed_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    lines = [
        bytes(rng.choice(b"abcdefgh .") for _ in range(rng.randrange(0, 200))) for _ in range(22000)
    ]
    body = (b"Subject: big\r\n\r\n" + b"\r\n".join(lines))[: 2 * 1024 * 1024] + b"\r\n"
    stored = stored_body(tmp_path, body)
    writes: list[int] = []
    original = MaildirFile.write

    def spy(self: MaildirFile, data: bytes) -> None:
        writes.append(len(data))
        original(self, data)

    monkeypatch.setattr(MaildirFile, "write", spy)
    root = tmp_path / "mail"
    transport = MaildirTransport(settings(root, lf_line_endings=False))
    assert await deliver(transport, envelope("big@example.test"), stored) == [
        ("big@example.test", 250, "2.0.0")
    ]
    box = mailbox.Maildir(root / "example.test" / "big" / "Maildir", create=False)
    [msg] = box
    assert msg["Delivered-To"] == "big@example.test" and msg["Subject"] == "big"
    head = b"Return-Path: <s@sender.test>\r\nDelivered-To: big@example.test\r\n"
    [path] = files_under(root)  # read raw: mailbox turns CRLF into LF
    assert path.read_bytes() == head + body
    assert len(writes) > 30 and max(writes) <= 64 * 1024


async def test_a_damaged_spool_body_leaves_nothing_and_raises(tmp_path: Path) -> None:
    body = b"Subject: x\r\n\r\n" + b"y" * 200_000
    good = stored_body(tmp_path, body)
    bad = StoredBody(good.queue_id, good.path, good.offset, good.size, good.crc ^ 1)
    root = tmp_path / "mail"
    with pytest.raises(CorruptMessageError):
        await deliver(MaildirTransport(settings(root)), envelope("a@example.test"), bad)
    box = root / "example.test" / "a" / "Maildir"
    assert os.listdir(box / "new") == [] and os.listdir(box / "tmp") == []


async def test_unique_names_under_concurrency(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    transport = MaildirTransport(settings(root))
    bodies = [BODY + b"message %d\r\n" % i for i in range(60)]
    results = await asyncio.gather(
        *(deliver(transport, envelope("same@example.test"), body) for body in bodies)
    )
    assert all(r == [("same@example.test", 250, "2.0.0")] for r in results)
    path = root / "example.test" / "same" / "Maildir"
    assert len(mailbox.Maildir(path, create=False)) == 60
    got = sorted(
        (path / "new" / name).read_bytes().split(b"\n", 2)[2] for name in os.listdir(path / "new")
    )
    assert got == sorted(b.replace(b"\r\n", b"\n") for b in bodies)
    assert len({unique_name("h") for _ in range(10000)}) == 10000


async def test_over_quota_defers_with_4_2_2_and_room_is_seen_at_once(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    transport = MaildirTransport(settings(root, quota=1000))
    body = b"Subject: q\r\n\r\n" + b"x" * 500 + b"\r\n"
    env = envelope("q@example.test")
    assert await deliver(transport, env, body) == [("q@example.test", 250, "2.0.0")]
    assert await deliver(transport, env, body) == [("q@example.test", 452, "4.2.2")]
    box = mailbox.Maildir(root / "example.test" / "q" / "Maildir", create=False)
    assert len(box) == 1
    assert os.listdir(root / "example.test" / "q" / "Maildir" / "tmp") == []
    # The user reads and deletes the message: the next delivery fits again (no wait for
    # the usage cache to expire), and a message in cur/ with flags counts too.
    box.remove(next(iter(box.keys())))
    assert await deliver(transport, env, body) == [("q@example.test", 250, "2.0.0")]
    maildir = root / "example.test" / "q" / "Maildir"
    [name] = os.listdir(maildir / "new")
    os.rename(maildir / "new" / name, maildir / "cur" / f"{name}:2,S")  # read by the user
    assert maildir_usage(str(root / "example.test" / "q" / "Maildir")) > 500
    assert await deliver(transport, env, body) == [("q@example.test", 452, "4.2.2")]


@pytest.mark.parametrize(
    "address",
    [
        "../evil@example.test",
        "a/b@example.test",
        ".hidden@example.test",
        "..@example.test",
        "a..b@example.test",
        "nul\x00x@example.test",
        "tab\tx@example.test",
        "del\x7fx@example.test",
        ("x" * 65) + "@example.test",
        "@example.test",
        "user@ex/ample.test",
        "user@..",
        "user@.hidden",
    ],
)
async def test_bad_mailbox_names_are_refused_5_1_3_and_create_nothing(
    tmp_path: Path, address: str
) -> None:
    root = tmp_path / "root" / "mail"
    transport = MaildirTransport(settings(root))
    [(_, code, status)] = await deliver(transport, envelope(address), BODY)
    assert (code, status) == (550, "5.1.3")
    assert not (tmp_path / "root").exists()
    assert os.listdir(tmp_path) == []


async def test_line_breaks_in_addresses_never_reach_a_header(tmp_path: Path) -> None:
    transport = MaildirTransport(settings(tmp_path / "mail"))
    env = envelope("a@example.test", sender="s@x.test\r\nX-Evil: 1")
    assert await deliver(transport, env, BODY) == [("a@example.test", 550, "5.1.7")]
    assert await deliver(transport, envelope("a\r\nX-Evil: 1@example.test"), BODY) == [
        ("a\r\nX-Evil: 1@example.test", 550, "5.1.3")
    ]
    assert files_under(tmp_path) == []


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """No file may be created in ``directory``: chmod for a user, the immutable flag
    for root (who ignores permissions)."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory unwritable")
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i failed: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


async def test_a_permission_error_defers_and_nothing_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    (root / "example.test").mkdir(parents=True)
    transport = MaildirTransport(settings(root))
    env = envelope("p@example.test")
    with unwritable(root / "example.test"):
        [(_, code, status)] = await deliver(transport, env, BODY)
    assert (code, status) == (451, "4.3.0")
    assert files_under(root) == []
    assert await deliver(transport, env, BODY) == [("p@example.test", 250, "2.0.0")]
    # The mailbox exists but its new/ cannot take the file: the tmp/ file is removed.
    box = root / "example.test" / "p" / "Maildir"
    with unwritable(box / "new"):
        [(_, code, status)] = await deliver(transport, env, BODY)
    assert (code, status) == (451, "4.3.0")
    assert os.listdir(box / "tmp") == [] and len(os.listdir(box / "new")) == 1


async def test_a_full_disk_defers_with_4_3_1_and_leaves_no_partial_file(tmp_path: Path) -> None:
    mount = tmp_path / "fs"
    try:
        with mount_tmpfs(mount, "1m"):
            transport = MaildirTransport(settings(mount))
            env = envelope("d@example.test")
            assert await deliver(transport, env, BODY) == [("d@example.test", 250, "2.0.0")]
            fill(mount)
            body = b"Subject: big\r\n\r\n" + b"z" * 300_000 + b"\r\n"
            assert await deliver(transport, env, body) == [("d@example.test", 452, "4.3.1")]
            box = mount / "example.test" / "d" / "Maildir"
            assert os.listdir(box / "tmp") == [] and len(os.listdir(box / "new")) == 1
    except MountError as exc:
        pytest.skip(str(exc))


async def test_the_transport_contract(tmp_path: Path) -> None:
    config = parse_config(
        f'[server]\nhostname = "mx.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
    )
    policy = config.policy_for("example.test")
    transport = MaildirTransport(settings(tmp_path / "mail"))
    assert transport.destination("example.test", policy) == "maildir:example.test"
    route = Route("example.test", "maildir:example.test", "default", policy, lambda *a: None)
    opened = await transport.open(route)
    assert opened.connection is not None and opened.connection.usable
    assert await opened.connection.can_carry("other.test")
    await opened.connection.close()


def test_templates_and_paths() -> None:
    template = "/var/mail/{domain}/{user}/Maildir"
    check_template(template)
    assert mailbox_path(template, "example.test", "alice") == "/var/mail/example.test/alice/Maildir"
    assert mailbox_path("/m/{user}", "ignored/../x", "bob") == "/m/bob"  # {domain} unused
    assert mailbox_path(template, "example.test", "{domain}") == (
        "/var/mail/example.test/{domain}/Maildir"  # one pass: a name is never expanded
    )
    assert (
        mailbox_path(template, "example.test", "élodie") == "/var/mail/example.test/élodie/Maildir"
    )
    for bad in (
        "relative/{user}",
        "/m/{domain}",
        "/m/{user}/{other}",
        "/m/../{user}",
        "/m//{user}",
    ):
        with pytest.raises(ValueError):
            check_template(bad)
    with pytest.raises(BadMailbox):
        mailbox_path(template, "example.test", "é" * 33)  # 66 octets
    with pytest.raises(ValueError):
        MaildirSettings(path="/m/{user}", quota=-1)


def test_lf_conversion_is_the_same_however_the_body_is_cut() -> None:
    rng = random.Random(3)
    for _ in range(300):
        body = bytes(rng.choice(b"\r\na.") for _ in range(rng.randrange(0, 40)))
        cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randrange(0, 6))))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        conv = LfConverter()
        out = b"".join(conv.feed(p) for p in pieces) + conv.end()
        assert out == body.replace(b"\r\n", b"\n"), (body, pieces)


async def test_a_cancelled_delivery_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"Subject: slow\r\n\r\n" + b"w" * (1024 * 1024)
    stored = stored_body(tmp_path, body)
    original = MaildirFile.write
    writing = threading.Event()

    def slow(self: MaildirFile, data: bytes) -> None:
        writing.set()
        time.sleep(0.01)
        original(self, data)

    monkeypatch.setattr(MaildirFile, "write", slow)
    root = tmp_path / "mail"
    task = asyncio.create_task(
        deliver(MaildirTransport(settings(root)), envelope("c@example.test"), stored)
    )
    assert await asyncio.to_thread(writing.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    box = root / "example.test" / "c" / "Maildir"
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "new") == []
