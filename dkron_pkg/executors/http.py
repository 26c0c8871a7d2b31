"""The `http` executor: one HTTP(S) request per run, as Dkron's http plugin.

Differences from Dkron, on purpose: header values may contain ':' (Dkron cut them at the
second ':'), bad keys are reported at validation instead of being half-ignored at run time,
and a failed expectCode/expectBody check keeps the response body in the output.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from dkron_pkg.executors.base import (
    ExecResult,
    OutputTail,
    failure_output,
    key_error,
    non_string_keys,
    parse_go_bool,
    safe_emit,
    wait_for_start,
)
from dkron_pkg.executors.watchdog import WATCHDOG, Watch

DEFAULT_TIMEOUT = 30
MAX_REDIRECTS = 10
STOPPED_MESSAGE = "http: execution stopped by request"
CODE_MISMATCH = "received response code does not match the expected code"
BODY_MISMATCH = "received response body did not match the expected body"
BODY_MATCH_HEAD = 8 << 20  # bytes of the body kept from its start for expectBody
_READ_SIZE = 65_536
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_USER_AGENT = "dkron-py"


@dataclass
class HttpConfig:
    """executor_config of an http job, checked and converted."""

    method: str
    url: str
    headers: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower name -> (name, value)
    body: bytes = b""
    timeout: float | None = DEFAULT_TIMEOUT
    warnings: list[str] = field(default_factory=list)
    expect_codes: set[int] | None = None
    expect_body: re.Pattern[str] | None = None
    debug: bool = False
    no_verify: bool = False
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""


def parse_headers(text: str) -> dict[str, tuple[str, str]]:
    """A JSON array of "Name: value"; split on the first ':' only, later names replace earlier."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f'must be a JSON array of "Name: value" strings ({exc.msg} at position {exc.pos})'
        ) from None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError('must be a JSON array of "Name: value" strings')
    headers: dict[str, tuple[str, str]] = {}
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise ValueError(f'entry "{item}" is not "Name: value"')
        if "\r" in value or "\n" in value:
            raise ValueError(f'entry "{item}" contains a line break')
        headers[name.lower()] = (name, value.strip())
    return headers


def _parse_timeout(text: str | None) -> tuple[float | None, list[str]]:
    """Whole seconds as Dkron's Atoi; bad values fall back to the default with a warning."""
    if text is None or text == "":
        return DEFAULT_TIMEOUT, []
    try:
        seconds = int(text)
        if seconds < 0:
            raise ValueError
    except ValueError:
        warning = (
            f'Warning: invalid timeout value "{text}", using the default of {DEFAULT_TIMEOUT} s.'
        )
        return DEFAULT_TIMEOUT, [warning]
    return (seconds or None), []  # 0 means no limit, as in Go's http.Client


def parse_http_config(config: dict[str, str]) -> tuple[HttpConfig | None, list[str]]:
    """Check every key; return the converted config or the messages naming bad keys."""
    errors = non_string_keys(config)
    if errors:
        return None, errors
    method = config.get("method", "")
    if not method:
        errors.append(key_error("method", "method is empty"))
    elif not _TOKEN.match(method):
        errors.append(key_error("method", f'invalid method "{method}"'))
    url = config.get("url", "")
    if not url:
        errors.append(key_error("url", "url is empty"))
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            errors.append(key_error("url", f'unsupported scheme in "{url}" (use http or https)'))
        elif not parts.hostname:
            errors.append(key_error("url", f'no host in "{url}"'))
        else:
            try:
                _ = parts.port
            except ValueError:
                errors.append(key_error("url", f'invalid port in "{url}"'))
    headers: dict[str, tuple[str, str]] = {}
    if config.get("headers", ""):
        try:
            headers = parse_headers(config["headers"])
        except ValueError as exc:
            errors.append(key_error("headers", str(exc)))
    timeout, warnings = _parse_timeout(config.get("timeout"))
    codes = None
    if config.get("expectCode", ""):
        codes = set()
        for item in config["expectCode"].split(","):
            item = item.strip()
            if item.isdigit() and 100 <= int(item) <= 999:
                codes.add(int(item))
            else:
                errors.append(key_error("expectCode", f'"{item}" is not an HTTP status code'))
    pattern = None
    if config.get("expectBody", ""):
        try:
            pattern = re.compile(config["expectBody"])
        except re.error as exc:
            errors.append(key_error("expectBody", f"invalid regular expression: {exc}"))
    no_verify = False
    if config.get("tlsNoVerifyPeer", ""):
        try:
            no_verify = parse_go_bool(config["tlsNoVerifyPeer"])
        except ValueError as exc:
            errors.append(key_error("tlsNoVerifyPeer", str(exc)))
    cert, key = config.get("tlsCertificateFile", ""), config.get("tlsCertificateKeyFile", "")
    if cert and not key:
        errors.append(key_error("tlsCertificateKeyFile", "required with tlsCertificateFile"))
    if key and not cert:
        errors.append(key_error("tlsCertificateFile", "required with tlsCertificateKeyFile"))
    if errors:
        return None, errors
    cfg = HttpConfig(
        method=method,
        url=url,
        headers=headers,
        body=config.get("body", "").encode(),
        timeout=timeout,
        warnings=warnings,
        expect_codes=codes,
        expect_body=pattern,
        debug=bool(config.get("debug", "")),
        no_verify=no_verify,
        cert_file=cert,
        key_file=key,
        ca_file=config.get("tlsRootCAsFile", ""),
    )
    return cfg, []


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns if path else 0
    except OSError:
        return -1


@functools.lru_cache(maxsize=100)
def _ssl_context(
    no_verify: bool, cert: str, key: str, ca: str, _stamp: tuple[int, int, int]
) -> ssl.SSLContext:
    """Contexts are cached per TLS settings (and file times): building one reads CA files."""
    ctx = ssl.create_default_context(cafile=ca or None)
    if no_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key or None)
    return ctx


def ssl_context_for(cfg: HttpConfig) -> ssl.SSLContext:
    """The TLS settings of the job as an SSLContext; OSError/SSLError when files are bad."""
    for path in (cfg.cert_file, cfg.key_file, cfg.ca_file):
        try:
            if path:
                open(path, "rb").close()
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise TlsFilesError(f"http: cannot load TLS file {path}: {reason}") from None
    stamp = (_mtime(cfg.cert_file), _mtime(cfg.key_file), _mtime(cfg.ca_file))
    try:
        return _ssl_context(cfg.no_verify, cfg.cert_file, cfg.key_file, cfg.ca_file, stamp)
    except ssl.SSLError as exc:
        raise TlsFilesError(f"http: cannot load TLS files: {exc}") from None
    except OSError as exc:
        raise TlsFilesError(f"http: cannot load TLS files: {exc}") from None


class TlsFilesError(Exception):
    """A certificate, key or CA file of the job cannot be read or parsed."""


class _Abort:
    """Lets the watchdog end a request stuck in the network by shutting its socket."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: http.client.HTTPConnection | None = None
        self.reason: str | None = None  # "stopped" or "timeout"

    def trip(self, reason: str) -> None:
        with self.lock:
            self.reason = reason
            sock = self.conn.sock if self.conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _redirect(method: str, body: bytes, status: int) -> tuple[str, bytes]:
    """Go's rules: 301/302/303 turn into GET without a body (HEAD stays), 307/308 keep all."""
    if status in (307, 308):
        return method, body
    return ("HEAD" if method == "HEAD" else "GET"), b""


class HttpExecutor:
    """Sends the configured request; success when the response passes the expectations."""

    name = "http"

    def validate(self, config: dict[str, str]) -> list[str]:
        return parse_http_config(config)[1]

    def run(
        self,
        config: dict[str, str],
        *,
        job_name: str,
        on_output: Callable[[bytes], None],
        cancel: threading.Event,
        start_at_ns: int | None = None,
    ) -> ExecResult:
        cfg, errors = parse_http_config(config)
        if not wait_for_start(start_at_ns, cancel):
            return ExecResult(False, failure_output(STOPPED_MESSAGE, b""), STOPPED_MESSAGE)
        if cfg is None:
            error = "; ".join(errors)
            return ExecResult(False, failure_output(error, b""), error)
        tail = OutputTail()

        def emit(data: bytes) -> None:
            tail.write(data)
            safe_emit(on_output, data)

        for warning in cfg.warnings:
            emit(warning.encode() + b"\n")
        if cfg.debug:
            emit(b"config: " + json.dumps(config, sort_keys=True).encode() + b"\n")
        abort = _Abort()
        watch = Watch(cancel=cancel, on_cancel=lambda: abort.trip("stopped"))
        if cfg.timeout is not None:
            watch.deadline = time.monotonic() + cfg.timeout
            watch.on_deadline = lambda: abort.trip("timeout")
        started_ns = time.time_ns()
        WATCHDOG.add(watch)
        try:
            error, status, body_ok = self._exchange(cfg, abort, emit)
        finally:
            WATCHDOG.remove(watch)
            if abort.conn is not None:
                abort.conn.close()
        timed_out = abort.reason == "timeout" or (
            error is not None
            and cfg.timeout is not None
            and watch.deadline is not None
            and time.monotonic() >= watch.deadline - 0.01  # the socket's own timeout won the race
        )
        if abort.reason == "stopped":
            error = STOPPED_MESSAGE
        elif timed_out:
            error = (
                f'{cfg.method} "{cfg.url}": timeout after {cfg.timeout:g}s '
                "(Client.Timeout exceeded)"
            )
        elif error is None and cfg.expect_codes is not None and status not in cfg.expect_codes:
            want = ",".join(str(c) for c in sorted(cfg.expect_codes))
            error = f"{CODE_MISMATCH} (got {status}, expected {want})"
        elif error is None and not body_ok:
            error = (
                f"{BODY_MISMATCH} (pattern {cfg.expect_body.pattern if cfg.expect_body else ''})"
            )
        output = tail.getvalue()
        if error is None:
            return ExecResult(True, output, "", started_ns)
        return ExecResult(False, failure_output(error, output), error, started_ns)

    def _exchange(
        self, cfg: HttpConfig, abort: _Abort, emit: Callable[[bytes], None]
    ) -> tuple[str | None, int | None, bool]:
        """Send the request (following redirects) and stream the body into the output.

        Returns (transport error or None, status code, whether expectBody matched).
        """
        method, url, body = cfg.method, cfg.url, cfg.body
        deadline = time.monotonic() + cfg.timeout if cfg.timeout else None
        try:
            for hop in range(MAX_REDIRECTS + 1):
                parts = urlsplit(url)
                remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
                host, port = parts.hostname or "", parts.port
                conn: http.client.HTTPConnection
                if parts.scheme == "https":
                    conn = http.client.HTTPSConnection(
                        host, port, timeout=remaining, context=ssl_context_for(cfg)
                    )
                elif parts.scheme == "http":
                    conn = http.client.HTTPConnection(host, port, timeout=remaining)
                else:
                    return f'{method} "{url}": unsupported protocol scheme', None, False
                with abort.lock:
                    if abort.conn is not None:
                        abort.conn.close()
                    abort.conn = conn
                conn.connect()
                if abort.reason is not None:
                    return None, None, False
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                headers = {"User-Agent": _USER_AGENT, "Connection": "close"}
                original_host = urlsplit(cfg.url).hostname
                for name, value in cfg.headers.values():
                    if host != original_host and name.lower() in ("authorization", "cookie"):
                        continue  # credentials do not follow a redirect to another host
                    headers[name] = value
                conn.request(method, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                location = resp.getheader("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    if hop == MAX_REDIRECTS:
                        return (
                            f'{method} "{url}": stopped after {MAX_REDIRECTS} redirects',
                            None,
                            False,
                        )
                    resp.close()
                    url = urljoin(url, location)
                    method, body = _redirect(method, body, resp.status)
                    continue
                return None, resp.status, self._read_body(cfg, resp, emit)
        except TlsFilesError as exc:
            return str(exc), None, False
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            if abort.reason is not None:
                return None, None, False
            return f'{method} "{url}": {_describe(exc)}', None, False
        return None, None, False  # pragma: no cover - the loop always returns

    @staticmethod
    def _read_body(
        cfg: HttpConfig, resp: http.client.HTTPResponse, emit: Callable[[bytes], None]
    ) -> bool:
        """Stream the body out; keep its start (and the tail) to look for expectBody."""
        if cfg.debug:
            lines = [f"response: {resp.status} {resp.reason}"]
            lines += [f"{k}: {v}" for k, v in resp.getheaders()]
            emit(("\n".join(lines) + "\n\n").encode())
        head = bytearray()
        body_tail = OutputTail()
        while chunk := resp.read(_READ_SIZE):
            if cfg.expect_body is not None:
                if len(head) < BODY_MATCH_HEAD:
                    head += chunk[: BODY_MATCH_HEAD - len(head)]
                body_tail.write(chunk)
            emit(chunk)
        if cfg.expect_body is None:
            return True
        if cfg.expect_body.search(head.decode("utf-8", "replace")):
            return True
        return body_tail.total > len(head) and bool(
            cfg.expect_body.search(body_tail.getvalue().decode("utf-8", "replace"))
        )


def _describe(exc: BaseException) -> str:
    """Short text for a transport error ("connection refused", "timed out", ...)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: {exc.verify_message or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
