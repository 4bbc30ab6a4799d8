"""``make install`` staged under DESTDIR: the venv, the command link, the unit, the config
(kept when present), logrotate and the directories; the installed ``outrider`` runs.

The install is real (a fresh venv, ``pip install .`` with its dependencies: about 15 s
here) but offline: pip is pointed at the machine's local package indexes only, and the
test is skipped when there are none (it would need the network).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import outrider

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def offline_pip_env() -> dict[str, str]:
    """The environment that keeps pip on this machine's local indexes (file: URLs, dirs)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    indexes: list[str] = []
    links: list[str] = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith("index-url"):
            indexes += [v for v in values if v.startswith("file:")]
        elif key.endswith("find-links"):
            links += [v for v in values if v.startswith(("/", "file:"))]
    if not indexes:
        pytest.skip("no local package index configured for pip: make install needs the network")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {
        "PIP_INDEX_URL": indexes[0],
        "PIP_EXTRA_INDEX_URL": " ".join(indexes[1:]),
        "PIP_FIND_LINKS": " ".join(links),
        "PIP_NO_INPUT": "1",
    }
    return env


def make_install(dest: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "install",
            f"DESTDIR={dest}",
            "PREFIX=/opt/outrider",
            "PIP_INSTALL_ARGS=--no-compile",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)s", text)
    assert match is not None, text
    return int(match[1])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_make_install_under_destdir(tmp_path: Path) -> None:
    env = offline_pip_env()
    dest = tmp_path / "root"
    result = make_install(dest, env)
    assert "systemctl enable --now outrider" in result.stdout

    link = dest / "usr/local/bin/outrider"
    assert link.is_symlink() and os.readlink(link) == "/opt/outrider/bin/outrider"
    unit = (dest / "etc/systemd/system/outrider.service").read_text()
    assert unit == (PACKAGING / "outrider.service").read_text()  # default paths: as shipped
    assert "ExecStart=/usr/local/bin/outrider run -c /etc/outrider/outrider.toml\n" in unit
    assert (dest / "etc/logrotate.d/outrider").read_text() == (
        PACKAGING / "outrider.logrotate"
    ).read_text()
    config = dest / "etc/outrider/outrider.toml"
    assert config.read_text() == (PACKAGING / "outrider.toml").read_text()
    assert (mode(config), mode(config.parent)) == (0o640, 0o750)
    assert mode(dest / "var/spool/outrider") == 0o700
    assert mode(dest / "var/log/outrider") == mode(dest / "var/lib/outrider") == 0o750

    installed = dest / "opt/outrider/bin/outrider"
    version = subprocess.run(
        [str(installed), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert version.stdout.strip() == f"outrider {outrider.__version__}", version.stderr
    check = subprocess.run(
        [str(installed), "check-config"],
        env={**env, "OUTRIDER_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (check.returncode, check.stdout.strip()) == (0, f"{config}: OK"), check.stderr

    # Again, as an upgrade: the administrator's config stays as it is.
    config.write_text(config.read_text() + "# edited by the administrator\n")
    again = make_install(dest, env)
    assert "keeping the existing /etc/outrider/outrider.toml" in again.stdout
    assert config.read_text().endswith("# edited by the administrator\n")


def test_the_unit_waits_longer_than_a_graceful_stop_and_refuses_to_loop_on_a_bad_config() -> None:
    unit = (PACKAGING / "outrider.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["Type"] == "notify"
    assert settings["RestartPreventExitStatus"] == "78"
    assert settings["Restart"] == "on-failure"
    config = tomllib.loads((PACKAGING / "outrider.toml").read_text())
    shutdown = seconds(config["server"]["shutdown-timeout"])
    assert seconds(settings["TimeoutStopSec"]) > 2 * shutdown + 10
    written = {config["server"][k] for k in ("spool-dir", "log-dir", "state-dir")}
    assert written == set(settings["ReadWritePaths"].split())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this interpreter's outrider.
    program = Path(sys.executable).parent / "outrider"
    unit = (PACKAGING / "outrider.service").read_text()
    (tmp_path / "outrider.service").write_text(
        unit.replace("/usr/local/bin/outrider", str(program))
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "outrider.service")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "outrider.service" not in result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="no logrotate")
def test_logrotate_accepts_the_snippet_and_rotates(tmp_path: Path) -> None:
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o750)
    (log_dir / "outrider.log").write_text("a line\n")
    snippet = (PACKAGING / "outrider.logrotate").read_text()
    conf = tmp_path / "outrider.logrotate"
    conf.write_text(
        snippet.replace("/var/log/outrider", str(log_dir)).replace(
            " outrider outrider", f" {user} {group}"
        )
    )
    result = subprocess.run(
        ["logrotate", "-f", "-v", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    assert (log_dir / "outrider.log.1").read_text() == "a line\n"  # delaycompress
    assert (log_dir / "outrider.log").read_text() == ""
    assert mode(log_dir / "outrider.log") == 0o640
