"""Who may do what over HTTP: pure decisions on the client address, token and headers.

Roles: ``admin`` (read and act), ``monitor`` (read only) and ``inject`` (only submit
mail, ``POST /api/v1/messages``; neither read nor act, so a campaign tool's token cannot
look at or change the queues). Rules, in order:

* A request that presents a bearer token is judged by the token alone: an unknown
  token is refused (401) even from an admin network, so a mistyped or revoked token
  shows up at once instead of silently falling back to the network's rights; a valid
  token gives its role even where the network would give more (a monitor token lets an
  admin see what the monitor sees).
* Without a token, the client address decides: ``admin-networks`` then
  ``monitor-networks``; otherwise 401.
* Rights granted by the network are usable only through a Host that names this server
  (an IP literal, ``localhost`` or ``[server] hostname``): a page on another origin
  that rebinds its DNS name to our address cannot borrow them. Tokens are not
  affected, since such a page does not know them.
* A state-changing request (anything but GET/HEAD) needs ``Content-Type:
  application/json`` or an ``X-Outrider-Request`` header, and its ``Origin``, when
  present, must match the Host: a cross-origin form or fetch cannot send either
  without a CORS preflight, which the API never answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from outrider.config.units import IPNetwork

Role = Literal["admin", "monitor", "inject"]
Need = Literal["admin", "monitor", "inject"]
READ_METHODS = frozenset({"GET", "HEAD"})
CUSTOM_HEADER = "X-Outrider-Request"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The role granted (None: refused), or the HTTP status and error to answer."""

    role: Role | None
    status: int = 200
    error: str = ""


def client_role(
    client_ip: str,
    authorization: str | None,
    *,
    admin_networks: Iterable[IPNetwork],
    monitor_networks: Iterable[IPNetwork],
    token_role: Callable[[str], Role | None],
) -> tuple[Role | None, bool, str]:
    """(role, by_network, error): the role from the token, or from the address."""
    if authorization is not None and authorization.strip():
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, False, "the Authorization header must be 'Bearer <token>'"
        role = token_role(token.strip())
        if role is None:
            return None, False, "unknown or revoked token"
        return role, False, ""
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return None, False, "no credentials"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in admin_networks):
        return "admin", True, ""
    if any(address in network for network in monitor_networks):
        return "monitor", True, ""
    return None, False, "no credentials: send 'Authorization: Bearer <token>'"


def host_names_server(host: str | None, server_names: Iterable[str]) -> bool:
    """True when a Host header names this server: an IP literal, localhost, or one of
    ``server_names`` (any port)."""
    if not host:
        return False
    name = _host_without_port(host).lower().rstrip(".")
    if name == "localhost" or name in {n.lower().rstrip(".") for n in server_names}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_without_port(host: str) -> str:
    host = host.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def same_origin(origin: str, host: str | None) -> bool:
    """Whether an Origin header names the same host and port as the Host header."""
    if not host or origin == "null":
        return False
    parts = urlsplit(origin)
    if not parts.netloc:
        return False
    default = {"http": "80", "https": "443"}.get(parts.scheme, "")
    return _with_port(parts.netloc, default) == _with_port(host, default)


def _with_port(netloc: str, default: str) -> str:
    netloc = netloc.strip().lower()
    bracket = netloc.rfind("]")
    has_port = ":" in netloc[bracket + 1 :] if bracket >= 0 else netloc.count(":") == 1
    return netloc if has_port else f"{netloc}:{default}"


def decide(
    *,
    method: str,
    client_ip: str,
    headers: Mapping[str, str],
    needs: Need,
    admin_networks: Iterable[IPNetwork],
    monitor_networks: Iterable[IPNetwork],
    token_role: Callable[[str], Role | None],
    server_names: Iterable[str] = (),
) -> Verdict:
    """May this request run an operation that needs role ``needs``?"""
    role, by_network, error = client_role(
        client_ip,
        headers.get("Authorization"),
        admin_networks=admin_networks,
        monitor_networks=monitor_networks,
        token_role=token_role,
    )
    if role is None:
        return Verdict(None, 401, error)
    host = headers.get("Host")
    if by_network and not host_names_server(host, server_names):
        return Verdict(
            None, 403, f"Host {host!r} does not name this server: use its address or a token"
        )
    if method.upper() not in READ_METHODS:
        origin = headers.get("Origin")
        if origin is not None and not same_origin(origin, host):
            return Verdict(None, 403, f"cross-origin request refused (Origin {origin})")
        content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json" and CUSTOM_HEADER not in headers:
            return Verdict(
                None,
                403,
                f"send Content-Type: application/json or an {CUSTOM_HEADER} header",
            )
    refusal = role_refusal(role, needs)
    if refusal:
        return Verdict(role, 403, refusal)
    return Verdict(role)


def role_refusal(role: Role, needs: Need) -> str:
    """Why ``role`` may not run an operation that needs ``needs`` ("" when it may):
    admin may do anything; monitor only reads; inject only injects."""
    if role == "admin" or role == needs:
        return ""
    if role == "inject":
        return "an inject token may only submit messages (POST /api/v1/messages)"
    if needs == "inject":
        return "this needs admin rights or an inject token"
    if needs == "admin":
        return "this needs admin rights (the monitor role reads only)"
    return ""
