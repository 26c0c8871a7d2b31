"""What every HTTP request must pass before its body is read: Host, Origin, length and type.

A browser on the API's machine is a way in: a page from anywhere can POST to 127.0.0.1, and a
DNS-rebinding page reaches the API under its own name and reads the answers. So the Host header
must name this server (an IP address, `localhost`, the machine's or the configured names: a
rebinding page can only send its own name), a state-changing request from a page of another
origin is refused unless that origin is listed, a body must carry its route's type (JSON, which
no HTML form can send, except Dkron's multipart restore and the crontab import), and nothing is
read before the length is known to be within the limit.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dkron_pkg.durations import parse_duration

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANY = "*"
_LENGTH = re.compile(r"[0-9]{1,20}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class Refused(Exception):
    """A refused request: answered with `status` and a plain-text message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class HttpPolicy:
    """The HTTP limits of one configuration (rebuilt when a SIGHUP brings a new one)."""

    allowed_hosts: frozenset[str] = frozenset({"localhost"})
    allowed_origins: frozenset[str] = frozenset()
    read_timeout: float = 30.0
    header_timeout: float = 10.0
    max_connections: int = 128

    @classmethod
    def from_config(cls, config: Any) -> HttpPolicy:
        hosts = {"localhost", *_machine_names()}
        for key in ("http_addr", "bind_addr", "advertise_addr"):
            name = host_name(str(getattr(config, key, "") or ""))
            if name:
                hosts.add(name)
        hosts.update(host_name(h) if h != ANY else ANY for h in _list(config, "http_allowed_hosts"))
        origins = {normalize_origin(o) for o in _list(config, "cors_allowed_origins")}
        return cls(
            allowed_hosts=frozenset(h for h in hosts if h),
            allowed_origins=frozenset(origins),
            read_timeout=_seconds(config, "http_read_timeout", cls.read_timeout),
            header_timeout=_seconds(config, "http_header_timeout", cls.header_timeout),
            max_connections=int(getattr(config, "http_max_connections", 0) or cls.max_connections),
        )


def _list(config: Any, key: str) -> list[str]:
    return [str(v).strip() for v in getattr(config, key, None) or [] if str(v).strip()]


def _seconds(config: Any, key: str, default: float) -> float:
    text = getattr(config, key, None)
    seconds = parse_duration(text) if text else default
    return seconds if seconds > 0 else default


def _machine_names() -> set[str]:
    full = socket.gethostname().lower()
    return {full, full.split(".", 1)[0]}


def policy_source(get_config: Callable[[], Any]) -> Callable[[], HttpPolicy]:
    """A callable giving the policy of the current configuration, built once per config."""
    cache: list[Any] = [object(), HttpPolicy()]

    def current() -> HttpPolicy:
        config = get_config()
        seen, policy = cache
        if config is not seen:
            policy = HttpPolicy.from_config(config)
            cache[:] = [config, policy]
        return policy

    return current


# ----- Host -------------------------------------------------------------------------------------


def host_name(text: str) -> str:
    """The name in a Host header or host:port address: lowercase, no port, no brackets."""
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_host(policy: HttpPolicy, header: str | None) -> None:
    """Refuse a Host that names another site (DNS rebinding); IP addresses are always fine."""
    if header is None:
        return  # HTTP/1.0 clients may leave it out; browsers never do
    name = host_name(header)
    if ANY in policy.allowed_hosts or name in policy.allowed_hosts or _is_ip(name):
        return
    raise Refused(
        403,
        f'Host "{header_safe(header)}" is not a name of this server: reach it by IP address, '
        "localhost or its host name, or add the name to --http-allowed-hosts",
    )


# ----- Origin and CORS --------------------------------------------------------------------------


def normalize_origin(origin: str) -> str:
    origin = origin.strip().lower()
    return origin if origin == ANY else origin.rstrip("/")


def _same_origin(origin: str, host_header: str | None) -> bool:
    scheme, sep, rest = origin.partition("://")
    return bool(sep and host_header) and scheme in ("http", "https") and rest == host_header.lower()


def origin_allowed(policy: HttpPolicy, origin: str, host: str | None) -> bool:
    """The page's origin is this server itself, or listed in --cors-allowed-origins."""
    normalized = normalize_origin(origin)
    if ANY in policy.allowed_origins or normalized in policy.allowed_origins:
        return True
    return _same_origin(normalized, host and host.strip())


def check_origin(policy: HttpPolicy, method: str, origin: str | None, host: str | None) -> None:
    """A page of another origin may send reads (without CORS headers it cannot see the
    answers) but not changes, unless its origin is listed."""
    if origin is None or method not in STATE_CHANGING or origin_allowed(policy, origin, host):
        return
    raise Refused(
        403,
        f'cross-origin request from "{header_safe(origin)}" refused: add the origin to '
        "--cors-allowed-origins if pages from it may change this server",
    )


def cors_headers(policy: HttpPolicy, origin: str | None, request_headers: str | None) -> dict:
    """CORS answer headers for a listed origin; none for anyone else."""
    if origin is None:
        return {}
    if ANY in policy.allowed_origins:
        allow = ANY
    elif normalize_origin(origin) in policy.allowed_origins:
        allow = origin
    else:
        return {}
    out = {
        "Access-Control-Allow-Origin": header_safe(allow),
        "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": header_safe(request_headers or "*"),
        "Access-Control-Expose-Headers": "*",
    }
    if allow != ANY:
        out["Vary"] = "Origin"
    return out


# ----- body framing and type --------------------------------------------------------------------


def content_length(headers: Any, limit: int) -> int:
    """The declared body length (0 when none), checked before a byte of the body is read."""
    if headers.get("Transfer-Encoding") is not None:
        raise Refused(411, "Transfer-Encoding bodies are not supported: send Content-Length")
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0
    texts = {v.strip() for v in values}
    if len(texts) != 1:
        raise Refused(400, "conflicting Content-Length headers")
    text = texts.pop()
    if not _LENGTH.fullmatch(text):
        raise Refused(400, f'bad Content-Length "{header_safe(text[:40])}": expected a byte count')
    length = int(text)
    if length > limit:
        raise Refused(413, f"request body of {length} bytes is over the limit of {limit}")
    return length


def media_type(content_type: str | None) -> str:
    """ "application/json; charset=utf-8" -> "application/json"."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_body_type(content_type: str | None, expected: str) -> None:
    """Bodies must have the route's type; HTML forms can only send three others."""
    given = media_type(content_type)
    if given != expected:
        shown = f'"{header_safe(given)}"' if given else "no Content-Type"
        raise Refused(415, f"{shown} is not accepted here: send the body as {expected}")


# ----- answers ----------------------------------------------------------------------------------


def header_safe(value: str) -> str:
    """A header value HTTP/1.1 can carry: printable ASCII kept, anything else percent-encoded
    as UTF-8 (a node or job name outside Latin-1 once broke every answer)."""
    if _PRINTABLE.fullmatch(value):
        return value
    return quote(value, safe=_HEADER_SAFE)
