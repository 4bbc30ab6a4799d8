"""The daemon log's formats (text, JSON, journal) and its file: whole lines from several
processes, reopened after logrotate moves it."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.runtime import log_file
from outrider.runtime.event_log import EventLogSubscriber
from outrider.runtime.log_file import FdHandler, LogFileHandler, line_pieces
from outrider.runtime.logs import (
    JsonFormatter,
    LogSettings,
    formatter,
    reconfigure_logging,
    setup_logging,
    stderr_is_journal,
)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(
    msg: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord("outrider.test", level, __file__, 1, msg, args or None, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_line_has_the_documented_fields() -> None:
    rec = record("listening on %s", "127.0.0.1:25", level=logging.WARNING)
    rec.created = 1764700070.1239
    entry = json.loads(JsonFormatter("receiver-2").format(rec))
    assert entry == {
        "ts": "2025-12-02T18:27:50.123Z",
        "level": "WARNING",
        "process": "receiver-2",
        "logger": "outrider.test",
        "msg": "listening on 127.0.0.1:25",
    }


def test_json_line_about_a_message_has_its_queue_id_and_a_traceback_its_exc() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logging.LogRecord(
            "outrider.x", logging.ERROR, "f", 1, "failed", None, sys.exc_info(), None
        )
    rec.queue_id = "1ABC"
    text = JsonFormatter("delivery").format(rec)
    assert "\n" not in text  # one line, whatever the traceback holds
    entry = json.loads(text)
    assert entry["queue_id"] == "1ABC" and entry["msg"] == "failed"
    assert entry["exc"].startswith("Traceback") and "ValueError: boom\nsecond line" in entry["exc"]
    assert TS.match(entry["ts"])


def test_a_batch_of_mail_lines_becomes_one_json_object_per_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from outrider.events.types import Bounced, Delivered, MessageQueued
    from tests.unit.runtime.test_event_log import INFO, recipient

    events = [
        MessageQueued(1.0, INFO, 2, "default"),
        recipient(Delivered),
        recipient(Bounced, status="5.1.1", diagnostic="550 5.1.1 no\r\nsuch user"),
    ]
    with caplog.at_level(logging.INFO, "outrider.mail"):
        EventLogSubscriber(gather=0).handle(events)
    (rec,) = caplog.records  # gathered into one record...
    lines = JsonFormatter("delivery").format(rec).split("\n")
    entries = [json.loads(line) for line in lines]  # ...one object per line
    assert [e["queue_id"] for e in entries] == ["Q1", "Q1", "Q1"]
    assert [e["msg"].split(" ")[0] for e in entries] == ["received", "delivered", "bounced"]
    assert entries[2]["msg"].endswith("(550 5.1.1 no / such user)")
    assert {e["logger"] for e in entries} == {"outrider.mail"}
    assert {e["ts"] for e in entries} == {entries[0]["ts"]}
    text = formatter(LogSettings("delivery")).format(rec).split("\n")
    assert [line.split(" ", 2)[2] for line in text] == [
        f"INFO [delivery] outrider.mail: Q1: {e['msg']}" for e in entries
    ]


def test_text_lines_name_the_process() -> None:
    text = formatter(LogSettings("receiver-0")).format(record("a\nb"))
    first, second = text.split("\n")
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[receiver-0\] outrider\.test: a$", first
    )
    assert second.endswith(" INFO [receiver-0] outrider.test: b")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_journal_lines_start_with_the_syslog_priority(fmt: str) -> None:
    fmt_journal = formatter(LogSettings("delivery", fmt), journal=True)
    error = fmt_journal.format(record("one\ntwo", level=logging.ERROR))
    lines = error.split("\n")
    assert [line[:3] for line in lines] == ["<3>"] * (2 if fmt == "text" else 1)
    assert fmt_journal.format(record("x", level=logging.DEBUG)).startswith("<7>")
    assert fmt_journal.format(record("x", level=logging.WARNING)).startswith("<4>")
    if fmt == "text":  # the journal has the time
        assert error.split("\n")[0] == "<3>ERROR [delivery] outrider.test: one"


def test_journal_is_recognised_only_when_it_is_our_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert stderr_is_journal()
    other = os.stat(tmp_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{other.st_dev}:{other.st_ino}")
    assert not stderr_is_journal()  # inherited, but stderr was redirected since
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert not stderr_is_journal()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not stderr_is_journal()


def test_the_file_is_appended_to_and_reopened_once_logrotate_moved_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log" / "outrider.log"
    handler = LogFileHandler(path)  # creates the directory
    try:
        assert fcntl.fcntl(handler.fd, fcntl.F_GETFL) & os.O_APPEND
        assert path.stat().st_mode & 0o777 == 0o640
        handler.handle(record("before"))
        path.rename(tmp_path / "log" / "outrider.log.1")
        handler.handle(record("within the second"))  # no stat yet: still the old file
        monkeypatch.setattr(log_file, "REOPEN_CHECK_SECONDS", 0.0)
        handler._next_check = 0.0
        handler.handle(record("after"))
        assert (tmp_path / "log" / "outrider.log.1").read_text() == "before\nwithin the second\n"
        assert path.read_text() == "after\n"
        path.unlink()  # deleted rather than moved: created again
        handler.handle(record("again"))
        assert path.read_text() == "again\n"
    finally:
        handler.close()


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "outrider.log"
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from outrider.runtime.log_file import LogFileHandler\n"
        "h = LogFileHandler(Path(sys.argv[1]))\n"
        "tag = sys.argv[2]\n"
        "batch = '\\n'.join(f'{tag} {i:04d} ' + 'x' * 150 for i in range(60))\n"
        "for n in range(100):\n"
        "    h.handle(logging.LogRecord('t', 20, 'f', 1, batch, None, None))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in ("A", "B")]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * 100 * 60
    whole = re.compile(r"^[AB] \d{4} x{150}$")
    assert all(whole.match(line) for line in lines)


def test_records_longer_than_pipe_buf_are_cut_at_line_ends_on_a_pipe() -> None:
    import select

    read_fd, write_fd = os.pipe()
    try:
        handler = FdHandler(write_fd)
        lines = [f"{i:05d} " + "y" * 90 for i in range(200)]  # ~19 KB, several PIPE_BUFs
        handler.handle(record("\n".join(lines)))
        data = b""
        while len(data) < sum(len(line) + 1 for line in lines):
            data += os.read(read_fd, 1 << 16)
        assert data.decode().splitlines() == lines
    finally:
        os.close(read_fd)
        os.close(write_fd)
    pieces = line_pieces(b"\n".join(line.encode() for line in lines) + b"\n", select.PIPE_BUF)
    assert all(len(p) <= select.PIPE_BUF and p.endswith(b"\n") for p in pieces)
    long = line_pieces(b"z" * 10000, 4096)
    assert [len(p) for p in long] == [4096, 4096, 1808]


def test_setup_writes_stderr_and_the_file_and_a_reload_changes_the_format(
    tmp_path: Path, restore_root: None, capfd: pytest.CaptureFixture[str]
) -> None:
    text = LogSettings("delivery", "text", tmp_path / "a" / "outrider.log")
    setup_logging("INFO", text)
    logging.getLogger("outrider.t").info("first")
    reconfigure_logging(LogSettings("delivery", "json", tmp_path / "b" / "outrider.log"))
    logging.getLogger("outrider.t").info("second")
    assert (
        (tmp_path / "a" / "outrider.log")
        .read_text()
        .endswith("INFO [delivery] outrider.t: first\n")
    )
    assert json.loads((tmp_path / "b" / "outrider.log").read_text())["msg"] == "second"
    err = capfd.readouterr().err
    assert "INFO [delivery] outrider.t: first" in err and '"msg": "second"' in err


def test_a_reload_to_a_log_dir_that_cannot_be_opened_keeps_the_old_file(
    tmp_path: Path, restore_root: None
) -> None:
    settings = LogSettings("delivery", "text", tmp_path / "outrider.log")
    setup_logging("INFO", settings)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    reconfigure_logging(LogSettings("delivery", "text", blocker / "outrider.log"))
    logging.getLogger("outrider.t").info("still here")
    written = (tmp_path / "outrider.log").read_text()
    assert "ERROR [delivery] outrider.logs: reload: cannot open the daemon log" in written
    assert written.endswith("outrider.t: still here\n")


def test_mail_lines_are_valid_json_whatever_they_hold() -> None:
    lines = ['Q2: bounced to=<"a b"@bücher.example> (550 5.1.1 say \\"no\\" / \\x1b)', "no id here"]
    rec = record("%s", "\n".join(lines), **{"mail_lines": lines})
    entries = [json.loads(line) for line in JsonFormatter("delivery").format(rec).split("\n")]
    assert entries[0]["queue_id"] == "Q2" and entries[0]["msg"] == lines[0][4:]
    assert "queue_id" not in entries[1] and entries[1]["msg"] == "no id here"
    assert list(entries[0]) == ["ts", "level", "process", "logger", "queue_id", "msg"]


def test_a_file_that_cannot_be_written_is_reported_once_and_again_when_it_works(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    handler = LogFileHandler(tmp_path / "outrider.log")
    real_fd = handler.fd
    try:
        handler.fd = os.open(os.devnull, os.O_RDONLY)  # every write fails (EBADF)
        for n in range(3):
            handler.handle(record(f"lost {n}"))
        os.close(handler.fd)
        handler.fd = real_fd
        handler.handle(record("kept"))
    finally:
        handler.close()
    err = capfd.readouterr().err.splitlines()
    assert err == [
        f"outrider: cannot write the daemon log to {tmp_path / 'outrider.log'}: "
        "[Errno 9] Bad file descriptor; lines are lost until it works again",
        f"outrider: writing the daemon log to {tmp_path / 'outrider.log'} again",
    ]
    assert (tmp_path / "outrider.log").read_text() == "kept\n"


def test_under_the_journal_stderr_has_priorities_and_the_file_stays_plain(
    tmp_path: Path,
    restore_root: None,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    setup_logging("INFO", LogSettings("receiver-1", "text", tmp_path / "outrider.log"))
    logging.getLogger("outrider.t").warning("careful")
    assert capfd.readouterr().err == "<4>WARNING [receiver-1] outrider.t: careful\n"
    written = (tmp_path / "outrider.log").read_text()
    assert re.match(
        r"^\d{4}-\d\d-\d\d [\d:,]+ WARNING \[receiver-1\] outrider.t: careful\n$", written
    )


def test_closing_twice_leaves_a_reused_fd_number_alone(tmp_path: Path) -> None:
    handler = LogFileHandler(tmp_path / "outrider.log")
    number = handler.fd
    handler.close()
    opened = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT)
    other = os.dup2(opened, number)  # something else now has the number
    if opened != other:
        os.close(opened)
    try:
        handler.close()  # a reload closes the old handlers again
        os.fstat(other)  # still open
    finally:
        os.close(other)
