"""``[accounting] keep``: which files go (by the date in the name), and when the writer
removes them (at start and at each daily rotation); a file of other columns is moved aside."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest

from outrider.accounting.records import DEFAULT_FIELDS, FIELDS, AccountingRecord, RecordType
from outrider.accounting.retention import aside_name, day_of, expired, name_pattern
from outrider.accounting.writer import AccountingLog

DAY = 86_400.0
KEEP = 30 * DAY
NOV27 = 1_795_737_600.0  # 2026-11-27 00:00:00 UTC
NOON = NOV27 + 12 * 3600


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_file_goes_once_its_whole_day_is_older_than_keep() -> None:
    names = ["acct-2026-10-27.csv", "acct-2026-10-28.csv", "acct-2026-10-26.csv"]
    # 2026-10-27 ended at 10-28 00:00, exactly 30 days before 11-27 00:00.
    assert expired(names, prefix="acct", now=NOV27, keep=KEEP) == [
        "acct-2026-10-26.csv",
        "acct-2026-10-27.csv",
    ]
    # A second earlier, its last second's rows were not yet 30 days old.
    assert expired(names, prefix="acct", now=NOV27 - 1, keep=KEEP) == ["acct-2026-10-26.csv"]


def test_files_moved_aside_go_with_their_day() -> None:
    names = ["acct-2026-10-01.1.csv", "acct-2026-10-01.12.csv", "acct-2026-11-26.1.csv"]
    assert expired(names, prefix="acct", now=NOV27, keep=KEEP) == [
        "acct-2026-10-01.1.csv",
        "acct-2026-10-01.12.csv",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "outrider.log",
        "acct-2026-10-01.csv.gz",  # an operator's compressed copy
        "acct-2026-10-01.csv~",
        "acct-2026-10-01.0.csv",
        "acct-2026-10-01.x.csv",
        "acct-2026-13-01.csv",  # no such month
        "acct-2026-02-30.csv",  # no such day
        "acct-26-10-01.csv",
        "other-2026-10-01.csv",  # another prefix
        "xacct-2026-10-01.csv",
        "acct-2026-10-01.CSV",
        "acct-2026-10-01",
    ],
)
def test_names_not_of_the_pattern_are_never_chosen(name: str) -> None:
    assert expired([name], prefix="acct", now=NOV27 + 1000 * DAY, keep=DAY) == []


def test_the_prefix_is_taken_literally() -> None:
    assert day_of("a.b-2026-01-02.csv", name_pattern("a.b")) is not None
    assert day_of("aXb-2026-01-02.csv", name_pattern("a.b")) is None


def test_aside_name_takes_the_first_free_number() -> None:
    assert aside_name("acct", "2026-11-27", []) == "acct-2026-11-27.1.csv"
    taken = ["acct-2026-11-27.1.csv", "acct-2026-11-27.2.csv"]
    assert aside_name("acct", "2026-11-27", taken) == "acct-2026-11-27.3.csv"


def record(at: float) -> AccountingRecord:
    return AccountingRecord(
        RecordType.DELIVERED, at, at, "s@x", "r@x", "", "relayed", "2.0.0", "250 ok", "mx", "", "",
        "x/default", "default", "", "", "", 1,
    )  # fmt: skip


def touch(path: Path, text: str = "") -> Path:
    path.write_bytes(text.encode())
    return path


def test_remove_expired_at_start_deletes_only_old_log_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = touch(tmp_path / "acct-2026-10-01.csv")
    old_aside = touch(tmp_path / "acct-2026-10-01.1.csv")
    recent = touch(tmp_path / "acct-2026-11-26.csv")
    other = touch(tmp_path / "outrider.log")
    copy = touch(tmp_path / "acct-2026-10-01.csv.gz")
    os.mkdir(tmp_path / "acct-2026-09-01.csv")  # not a file: left alone
    os.symlink(recent, tmp_path / "acct-2026-09-02.csv")  # nor a link
    os.utime(recent, (0, 0))  # the mtime is not what counts
    log = AccountingLog(tmp_path, clock=Clock(NOON), keep=KEEP)
    with caplog.at_level(logging.INFO, logger="outrider.accounting"):
        assert sorted(log.remove_expired()) == sorted([old, old_aside])
    assert not old.exists() and not old_aside.exists()
    assert recent.exists() and other.exists() and copy.exists()
    assert (tmp_path / "acct-2026-09-01.csv").is_dir()
    assert (tmp_path / "acct-2026-09-02.csv").is_symlink()
    logged = [r for r in caplog.records if "older than keep" in r.getMessage()]
    assert len(logged) == 2 and all(r.levelno == logging.INFO for r in logged)
    assert str(old) in caplog.text


def test_without_keep_nothing_is_deleted(tmp_path: Path) -> None:
    old = touch(tmp_path / "acct-2000-01-01.csv")
    assert AccountingLog(tmp_path, clock=Clock(NOON)).remove_expired() == []
    assert old.exists()


def test_a_missing_directory_is_not_an_error(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path / "not-yet", clock=Clock(NOON), keep=KEEP)
    assert log.remove_expired() == []


def test_each_daily_rotation_removes_what_has_expired_since(tmp_path: Path) -> None:
    clock = Clock(NOON)
    log = AccountingLog(tmp_path, clock=clock, keep=2 * DAY)
    touch(tmp_path / "acct-2026-11-24.csv")
    touch(tmp_path / "acct-2026-11-25.csv")
    log.write(record(clock.now))  # the first file of the run: 11-24 is two days old
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "acct-2026-11-25.csv",
        "acct-2026-11-27.csv",
    ]
    touch(tmp_path / "acct-2026-11-24.csv")  # restored by hand during the day: kept
    clock.now += 3600
    log.write(record(clock.now))  # same day: no second look
    assert (tmp_path / "acct-2026-11-24.csv").exists()
    clock.now = NOV27 + DAY + 5  # past midnight: the rotation looks again
    log.write(record(clock.now))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "acct-2026-11-27.csv",
        "acct-2026-11-28.csv",
    ]


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_a_file_with_other_columns_is_moved_aside_not_appended_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After an upgrade that added columns, the day's file of the old release keeps its
    header and rows; the new rows start a file whose header names all their columns."""
    old_header = ",".join(FIELDS[:19])
    path = touch(tmp_path / "acct-2026-11-27.csv", f"{old_header}\r\nd,old row\r\n")
    touch(tmp_path / "acct-2026-11-27.1.csv", "taken")
    log = AccountingLog(tmp_path, clock=Clock(NOON))
    with caplog.at_level(logging.INFO, logger="outrider.accounting"):
        log.write(record(NOON))
    log.close()
    aside = tmp_path / "acct-2026-11-27.2.csv"
    assert aside.read_bytes() == f"{old_header}\r\nd,old row\r\n".encode()
    rows = read(path)
    assert rows[0] == list(DEFAULT_FIELDS) and len(rows) == 2 and len(rows[1]) == len(FIELDS)
    assert "moved to acct-2026-11-27.2.csv" in caplog.text


def test_a_torn_header_is_moved_aside_too(tmp_path: Path) -> None:
    path = touch(tmp_path / "acct-2026-11-27.csv", "type,timeLo")
    log = AccountingLog(tmp_path, clock=Clock(NOON))
    log.write(record(NOON))
    log.close()
    assert (tmp_path / "acct-2026-11-27.1.csv").read_text() == "type,timeLo"
    assert read(path)[0] == list(DEFAULT_FIELDS)


def test_a_file_of_todays_columns_is_appended_to(tmp_path: Path) -> None:
    for _ in range(2):
        log = AccountingLog(tmp_path, clock=Clock(NOON))
        log.write(record(NOON))
        log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["acct-2026-11-27.csv"]
    assert len(read(tmp_path / "acct-2026-11-27.csv")) == 3
