"""CSV accounting log: format, RFC 4180 quoting, daily rotation and restarts."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import pytest

from outrider.accounting.records import (
    FIELDS,
    AccountingRecord,
    RecordType,
    format_time,
    to_row,
)
from outrider.accounting.writer import AccountingLog

DAY1 = 1_795_811_465.0  # 2026-11-27 20:31:05 UTC
MIDNIGHT = 1_795_824_000.0  # 2026-11-28 00:00:00 UTC


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(**overrides: object) -> AccountingRecord:
    base = AccountingRecord(
        type=RecordType.DELIVERED,
        time_logged=DAY1,
        time_queued=DAY1 - 65,
        orig="sender@example.com",
        rcpt="user@example.org",
        orcpt="rfc822;user@example.org",
        dsn_action="relayed",
        dsn_status="2.0.0",
        dsn_diag="250 2.0.0 OK queued as 12345",
        dsn_mta="mx.example.org",
        dlv_source_ip="198.51.100.7",
        dlv_destination_ip="203.0.113.25",
        queue="example.org",
        vmta="",
        job_id="campaign-42",
        env_id="ENV1",
        msg_id="<abc@example.com>",
        size=4096,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


# The columns of the first release: processors read them by position, so every later
# column is appended after them.
FIRST_FIELDS = [
    "type",
    "timeLogged",
    "timeQueued",
    "orig",
    "rcpt",
    "orcpt",
    "dsnAction",
    "dsnStatus",
    "dsnDiag",
    "dsnMta",
    "dlvSourceIp",
    "dlvDestinationIp",
    "queue",
    "vmta",
    "jobId",
    "envId",
    "msgId",
    "size",
    "rule",
]


def test_record_type_codes_and_actions() -> None:
    assert [t.value for t in RecordType] == ["d", "b", "t", "q", "r", "rb", "f"]
    assert RecordType.DELIVERED.dsn_action == "relayed"
    assert RecordType.BOUNCED.dsn_action == "failed"
    assert RecordType.TRANSIENT.dsn_action == "delayed"
    assert RecordType.RECEIVED.dsn_action == ""
    assert len(FIELDS) == len(to_row(record())) == 27


def test_new_columns_come_after_the_old_ones() -> None:
    assert list(FIELDS[: len(FIRST_FIELDS)]) == FIRST_FIELDS
    assert FIELDS[len(FIRST_FIELDS) :] == (
        "queueId",
        "dlvSize",
        "srcType",
        "dlvType",
        "bounceCat",
        "srcMta",
        "dlvEsmtpAvailable",
        "vmtaPool",
    )


def test_time_format_matches_powermta() -> None:
    assert format_time(DAY1) == "2026-11-27 20:31:05+0000"
    assert format_time(DAY1 + 0.999) == "2026-11-27 20:31:05+0000"


def test_header_once_then_rows(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.write(record(queue_id="1A2B3C", dlv_size=4096, src_type="smtp", dlv_type="smtp"))
    log.write_many([record(type=RecordType.BOUNCED, dsn_action="failed"), record()])
    log.close()
    path = tmp_path / "acct-2026-11-27.csv"
    assert log.path == path
    raw = path.read_bytes()
    assert raw.startswith(b"type,timeLogged,timeQueued,orig,rcpt,orcpt,dsnAction,")
    assert raw.count(b"type,timeLogged") == 1
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 4
    rows = read_rows(path)
    assert rows[0] == list(FIELDS)
    assert rows[1] == [
        "d",
        "2026-11-27 20:31:05+0000",
        "2026-11-27 20:30:00+0000",
        "sender@example.com",
        "user@example.org",
        "rfc822;user@example.org",
        "relayed",
        "2.0.0",
        "250 2.0.0 OK queued as 12345",
        "mx.example.org",
        "198.51.100.7",
        "203.0.113.25",
        "example.org",
        "",
        "campaign-42",
        "ENV1",
        "<abc@example.com>",
        "4096",
        "",
        "1A2B3C",
        "4096",
        "smtp",
        "smtp",
        "",
        "",
        "",
        "",
    ]
    assert rows[2][-8:] == [""] * 8  # dlvSize of None is an empty cell
    assert [r[0] for r in rows[1:]] == ["d", "b", "d"]


@pytest.mark.parametrize(
    "diag",
    [
        "550 5.1.1 <a@b>, no such user",
        'said "no" to "you"',
        "line one\r\nline two",
        "bare\nLF and bare\rCR",
        '",\r\n"',
        "  leading and trailing spaces  ",
        "naïve ünïcode ✓",
        "",
    ],
)
def test_rfc4180_quoting_round_trips(tmp_path: Path, diag: str) -> None:
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.write(record(dsn_diag=diag, orig='odd,"sender"@example.com'))
    log.close()
    rows = read_rows(tmp_path / "acct-2026-11-27.csv")
    assert len(rows) == 2
    assert rows[1][FIELDS.index("dsnDiag")] == diag
    assert rows[1][FIELDS.index("orig")] == 'odd,"sender"@example.com'


def test_quoting_is_minimal(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.write(record(dsn_diag='a,b "c"'))
    log.close()
    raw = (tmp_path / "acct-2026-11-27.csv").read_text(encoding="utf-8")
    assert ',"a,b ""c""",' in raw
    assert ",sender@example.com,user@example.org," in raw


def test_nul_is_replaced_so_readers_accept_the_file(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.write(record(dsn_diag="bad\x00byte"))
    log.close()
    rows = read_rows(tmp_path / "acct-2026-11-27.csv")
    assert rows[1][FIELDS.index("dsnDiag")] == "bad\ufffdbyte"


def test_rotates_at_utc_midnight(tmp_path: Path) -> None:
    clock = FakeClock(MIDNIGHT - 0.5)
    log = AccountingLog(tmp_path, clock=clock, fields=FIELDS)
    log.write(record(rcpt="before@example.org"))
    first = log.path
    clock.now = MIDNIGHT
    log.write(record(rcpt="after@example.org"))
    clock.now = MIDNIGHT + 86_399.9
    log.write(record(rcpt="still-day-2@example.org"))
    second = log.path
    log.close()
    assert first == tmp_path / "acct-2026-11-27.csv"
    assert second == tmp_path / "acct-2026-11-28.csv"
    day1, day2 = read_rows(first), read_rows(second)
    assert day1[0] == day2[0] == list(FIELDS)
    assert [r[4] for r in day1[1:]] == ["before@example.org"]
    assert [r[4] for r in day2[1:]] == ["after@example.org", "still-day-2@example.org"]


def test_clock_going_back_reopens_the_earlier_day(tmp_path: Path) -> None:
    clock = FakeClock(MIDNIGHT + 10)
    log = AccountingLog(tmp_path, clock=clock, fields=FIELDS)
    log.write(record())
    clock.now = MIDNIGHT - 10  # e.g. an NTP step
    log.write(record())
    log.close()
    assert len(read_rows(tmp_path / "acct-2026-11-28.csv")) == 2
    assert len(read_rows(tmp_path / "acct-2026-11-27.csv")) == 2


def test_appends_after_restart_without_a_second_header(tmp_path: Path) -> None:
    for n in range(3):
        log = AccountingLog(tmp_path, clock=FakeClock(DAY1 + n), fields=FIELDS)
        log.write(record(size=n))
        log.close()
    rows = read_rows(tmp_path / "acct-2026-11-27.csv")
    assert rows[0] == list(FIELDS)
    assert [r[FIELDS.index("size")] for r in rows[1:]] == ["0", "1", "2"]
    assert sum(1 for r in rows if r[0] == "type") == 1


def test_prefix_and_directory_creation(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "logs"
    log = AccountingLog(target, prefix="acct-mta1", clock=FakeClock(DAY1))
    assert log.path is None  # nothing is created before the first record
    assert not target.exists()
    log.write(record())
    log.close()
    assert (target / "acct-mta1-2026-11-27.csv").exists()


def test_flush_hands_rows_to_the_os_and_close_is_final(tmp_path: Path) -> None:
    with AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS) as log:
        log.write(record())
        path = tmp_path / "acct-2026-11-27.csv"
        assert len(read_rows(path)) <= 1  # buffered, not written per record
        log.flush()
        assert len(read_rows(path)) == 2
    with pytest.raises(ValueError, match="closed"):
        log.write(record())
    log.close()  # idempotent


def test_flush_and_close_without_writes(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.flush()
    log.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "torn",
    [
        b'd,2026-11-27 20:31:05+0000,2026-11-27 20:30:00+0000,s@x,r@y,,failed,5.0.0,"550 cut',
        b'd,2026-11-27 20:31:05+0000,2026-11-27 20:30:00+0000,s@x,r@y,,failed,5.0.0,"line\r\n',
        b'd,2026-11-27 20:31:05+0000,2026-11-27 20:30:00+0000,s@x,r@y,,failed,5.0.0,"a""b"',
        b"d,2026-11-27 20:31:05+0000,2026-11-27 20:30:00+0000,s@x,r@y,,fail",
        b"d,2026-11-27 20:31:05+0000,2026-11-27 20:30:00+0000,s@x,r@y,,failed\r",
    ],
)
def test_torn_last_row_is_terminated_on_reopen(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "acct-2026-11-27.csv"
    good = io.StringIO()
    csv.writer(good, lineterminator="\r\n").writerows([FIELDS, to_row(record(size=1))])
    path.write_bytes(good.getvalue().encode() + torn)
    log = AccountingLog(tmp_path, clock=FakeClock(DAY1), fields=FIELDS)
    log.write(record(size=2, dsn_diag="after, the crash"))
    log.close()
    rows = read_rows(path)
    assert rows[0] == list(FIELDS)
    assert rows[1][FIELDS.index("size")] == "1"
    assert rows[-1] == list(to_row(record(size=2, dsn_diag="after, the crash")))
