"""The SCRAM secret in the state directory: unknown users get the same fake salt in every
receiver process and after a restart, as real users keep theirs."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from outrider.auth.sasl import new_mechanism
from outrider.auth.secret import SECRET_FILE, SecretError, UnknownUserSalts, load_secret
from outrider.auth.store import UserStore
from outrider.config.loader import parse_config
from outrider.runtime.listeners import user_store

CONFIG = """
[server]
hostname = "mx.test"
state-dir = "{state}"
[[listener]]
address = "127.0.0.1:0"
auth = true
allow-plaintext-auth = true
[auth]
users-file = "{users}"
"""

# What one receiver process does: build its user store from the config and answer the
# first SCRAM message for a name that is no user; prints the salt it hands out.
PROCESS = """
import sys
from outrider.auth.sasl import new_mechanism
from outrider.config.loader import load_config
from outrider.runtime.listeners import user_store
store = user_store(load_config(sys.argv[1]))
step = new_mechanism("SCRAM-SHA-256", store).start(b"n,,n=nobody,r=abc")
print(step.challenge.decode().split(",")[1])
"""


def fake_salt(store: UserStore, name: str = "nobody") -> bytes:
    mechanism = new_mechanism("SCRAM-SHA-256", store)
    assert mechanism is not None
    step = mechanism.start(f"n,,n={name},r=abc".encode())
    assert step.challenge is not None
    return base64.b64decode(step.challenge.decode().split(",")[1].removeprefix("s="))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "outrider.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", users=tmp_path / "users"))
    return path


def test_receiver_processes_and_restarts_hand_out_the_same_fake_salt(config_file: Path) -> None:
    def one_process() -> str:
        done = subprocess.run(
            [sys.executable, "-c", PROCESS, str(config_file)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    first, second = one_process(), one_process()
    assert first.startswith("s=") and first == second
    secret = config_file.parent / "state" / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_bytes()) == 32


def test_two_stores_on_one_state_dir_agree(config_file: Path) -> None:
    config = parse_config(config_file.read_text())
    one, two = user_store(config), user_store(config)
    assert one is not None and two is not None and one is not two
    assert fake_salt(one) == fake_salt(two)
    assert len(fake_salt(one)) == 16  # a real user's salt length
    assert fake_salt(one, "nobody") != fake_salt(one, "somebody")


def test_a_new_secret_gives_new_salts(tmp_path: Path) -> None:
    a = UserStore(tmp_path / "users", unknown_salts=UnknownUserSalts.from_state_dir(tmp_path / "a"))
    b = UserStore(tmp_path / "users", unknown_salts=UnknownUserSalts.from_state_dir(tmp_path / "b"))
    assert fake_salt(a) != fake_salt(b)


def test_processes_starting_together_agree(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"  # not there yet: created with the secret
    barrier = threading.Barrier(8)
    secrets: list[bytes] = []

    def start() -> None:
        barrier.wait()
        secrets.append(load_secret(state))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(secrets) == 8 and len(set(secrets)) == 1
    assert os.listdir(state) == [SECRET_FILE]  # no temporary file left behind
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_damaged_secret_stops_the_start(config_file: Path) -> None:
    secret = config_file.parent / "state" / SECRET_FILE
    secret.parent.mkdir()
    secret.write_bytes(b"short")
    with pytest.raises(SecretError, match="expected 32 bytes, found 5"):
        load_secret(secret.parent)
    with pytest.raises(RuntimeError, match="scram-secret"):
        user_store(parse_config(config_file.read_text()))


def test_a_readable_secret_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_secret(tmp_path)
    (tmp_path / SECRET_FILE).chmod(0o644)
    assert load_secret(tmp_path) == first
    assert "readable by group or others" in caplog.text
