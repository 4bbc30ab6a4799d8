"""The console's side of the control socket: one JSON request, one JSON reply.

The socket lives in the daemon's state directory, found from the same config file
the daemon runs with, so the console needs no address of its own and works without
any network listener.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outrider.config.model import Config

DEFAULT_CONFIG = "/etc/outrider/outrider.toml"
TIMEOUT = 60.0  # seconds: a look-up over a very large queue may take a while


class ConsoleError(Exception):
    """What the operator is told on stderr (the command exits 1)."""


def load(config_path: str) -> Config:
    """The daemon's config (relative paths are read from the current directory, as the
    daemon reads them)."""
    from outrider.config.loader import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise ConsoleError("\n".join(str(p) for p in exc.problems)) from None
    except OSError as exc:
        raise ConsoleError(f"{config_path}: cannot read: {exc.strerror}") from None


def socket_path(config_path: str) -> Path:
    """``<state-dir>/control.sock`` of the config. A file that no longer validates (an
    edit not yet reloaded, say) still names the running daemon's state directory: it
    is read from the TOML alone, so ``outrider reload`` can report what is wrong."""
    try:
        return load(config_path).server.state_dir / "control.sock"
    except ConsoleError:
        state_dir = raw_state_dir(config_path)
        if state_dir is None:
            raise
        return state_dir / "control.sock"


def raw_state_dir(config_path: str) -> Path | None:
    """``[server] state-dir`` read from the TOML without validating the rest."""
    import tomllib

    from outrider.config.model import ServerSettings

    try:
        with open(config_path, "rb") as fh:
            server = tomllib.load(fh).get("server", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = server.get("state-dir") if isinstance(server, dict) else None
    if value is None:
        value = ServerSettings.__dataclass_fields__["state_dir"].default
    return Path.cwd() / str(value) if isinstance(value, str | Path) else None


def request(path: Path, payload: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request and return the daemon's reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ConsoleError(f"the daemon is not running (nothing answers on {path})") from None
        except PermissionError:
            raise ConsoleError(
                f"permission denied on {path}: run this as the daemon's user"
            ) from None
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = _read_line(sock)
        except TimeoutError:
            raise ConsoleError(f"the daemon did not answer within {timeout:.0f}s") from None
        except OSError as exc:
            raise ConsoleError(f"lost the connection to the daemon: {exc}") from None
    if not data:
        raise ConsoleError("the daemon closed the connection without answering")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ConsoleError("the daemon sent a malformed reply")
    return reply


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)
