"""The http executor against real HTTP and HTTPS servers on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dkron_pkg.executors import ExecResult, get_executor
from dkron_pkg.executors.http import BODY_MISMATCH, CODE_MISMATCH, STOPPED_MESSAGE

HTTP = get_executor("http")
BIG = bytes(i % 251 for i in range(300_000))


class Handler(BaseHTTPRequestHandler):
    """Test routes: /echo, /status/<n>, /big, /slow, /redirect."""

    protocol_version = "HTTP/1.1"
    release: threading.Event

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/echo"):
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode(),
                "client_cert": bool(getattr(self.connection, "getpeercert", lambda: None)()),
            }
            self._send(200, json.dumps(doc).encode())
        elif self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            self._send(code, f"status {code}".encode())
        elif self.path == "/big":
            self._send(200, BIG)
        elif self.path == "/slow":
            self.server.release.wait(10)  # type: ignore[attr-defined]
            self._send(200, b"late")
        elif self.path.startswith("/redirect/"):
            code = int(self.path.rsplit("/", 1)[1])
            self._send(code, b"", {"Location": "/echo?from=redirect"})
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route


def start_server(tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


def stop_server(server: ThreadingHTTPServer) -> None:
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = start_server()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop_server(server)


def run(config: dict[str, str], cancel: threading.Event | None = None) -> ExecResult:
    assert HTTP is not None
    return HTTP.run(
        config, job_name="h", on_output=lambda _c: None, cancel=cancel or threading.Event()
    )


def test_get_returns_the_body_as_output(base: str) -> None:
    result = run({"method": "GET", "url": f"{base}/status/200"})
    assert result.success
    assert result.output == b"status 200"
    assert result.error == ""


def test_header_values_with_colons_survive(base: str) -> None:
    headers = json.dumps(["X-Time: 12:30:45", "Authorization: Bearer a:b:c", "X-Plain:v"])
    result = run({"method": "GET", "url": f"{base}/echo", "headers": headers})
    seen = json.loads(result.output)["headers"]
    assert seen["X-Time"] == "12:30:45"
    assert seen["Authorization"] == "Bearer a:b:c"
    assert seen["X-Plain"] == "v"
    assert seen["Connection"] == "close"


def test_method_and_body_reach_the_server(base: str) -> None:
    result = run({"method": "POST", "url": f"{base}/echo?x=1", "body": '{"k": "v"}'})
    doc = json.loads(result.output)
    assert (doc["method"], doc["path"], doc["body"]) == ("POST", "/echo?x=1", '{"k": "v"}')


def test_large_body_keeps_the_last_256000_bytes(base: str) -> None:
    chunks: list[bytes] = []
    assert HTTP is not None
    result = HTTP.run(
        {"method": "GET", "url": f"{base}/big"},
        job_name="h",
        on_output=chunks.append,
        cancel=threading.Event(),
    )
    assert result.output == BIG[-256_000:]
    assert b"".join(chunks) == BIG


def test_expect_code_mismatch_fails_with_dkrons_message(base: str) -> None:
    result = run({"method": "GET", "url": f"{base}/status/500", "expectCode": "200,206"})
    assert not result.success
    assert result.error.startswith(CODE_MISMATCH)
    assert "got 500" in result.error
    assert result.output.startswith(result.error.encode() + b"\n")
    assert result.output.endswith(b"status 500")


def test_expect_code_in_the_list_succeeds(base: str) -> None:
    assert run({"method": "GET", "url": f"{base}/status/206", "expectCode": "200, 206"}).success


def test_without_expect_code_any_status_is_success_as_in_dkron(base: str) -> None:
    assert run({"method": "GET", "url": f"{base}/status/503"}).success


def test_expect_body_is_a_regex_searched_in_the_body(base: str) -> None:
    assert run({"method": "GET", "url": f"{base}/status/200", "expectBody": r"st\w+ 2"}).success
    result = run({"method": "GET", "url": f"{base}/status/200", "expectBody": "^ok$"})
    assert not result.success
    assert result.error.startswith(BODY_MISMATCH)


def test_expect_body_sees_the_start_of_a_body_larger_than_the_tail(base: str) -> None:
    first = BIG[:3].hex()  # the start is not in the kept tail; match on raw bytes 0,1,2
    assert first == "000102"
    result = run({"method": "GET", "url": f"{base}/big", "expectBody": "^\x00\x01\x02"})
    assert result.success


def test_invalid_timeout_uses_the_default_and_warns_in_output(base: str) -> None:
    result = run({"method": "GET", "url": f"{base}/status/200", "timeout": "abc"})
    assert result.success
    assert result.output.startswith(b'Warning: invalid timeout value "abc"')
    assert result.output.endswith(b"status 200")


def test_timeout_ends_a_slow_request() -> None:
    server = start_server()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow"
        result = run({"method": "GET", "url": url, "timeout": "1"})
    finally:
        stop_server(server)
    assert not result.success
    assert "timeout after 1s" in result.error


def test_cancel_stops_a_request_in_flight() -> None:
    server = start_server()
    cancel = threading.Event()
    box: list[ExecResult] = []
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    worker = threading.Thread(target=lambda: box.append(run({"method": "GET", "url": url}, cancel)))
    try:
        worker.start()
        worker.join(0.3)
        cancel.set()
        worker.join(10)
    finally:
        stop_server(server)
    assert not worker.is_alive()
    assert box[0].error == STOPPED_MESSAGE


def test_connection_refused_is_a_clear_failure() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run({"method": "GET", "url": f"http://127.0.0.1:{port}/"})
    assert not result.success
    assert result.error == f'GET "http://127.0.0.1:{port}/": connection refused'


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_followed_like_go(base: str, code: int) -> None:
    result = run({"method": "POST", "url": f"{base}/redirect/{code}", "body": "b"})
    doc = json.loads(result.output)
    assert doc["path"] == "/echo?from=redirect"
    assert doc["method"] == ("POST" if code in (307, 308) else "GET")
    assert doc["body"] == ("b" if code in (307, 308) else "")


def test_debug_puts_the_config_and_response_head_in_the_output(base: str) -> None:
    result = run({"method": "GET", "url": f"{base}/status/200", "debug": "1"})
    text = result.output.decode()
    assert text.startswith("config: {")
    assert "response: 200 OK" in text
    assert text.endswith("status 200")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "http://x/"}, "executor_config.method: method is empty"),
        ({"method": "GET"}, "executor_config.url: url is empty"),
        ({"method": "GE T", "url": "http://x/"}, 'executor_config.method: invalid method "GE T"'),
        ({"method": "GET", "url": "ftp://x/"}, "executor_config.url: unsupported scheme"),
        ({"method": "GET", "url": "http:///p"}, "executor_config.url: no host"),
        ({"method": "GET", "url": "http://x:99999/"}, "executor_config.url: invalid port"),
        ({"method": "GET", "url": "http://x/", "headers": "X: y"}, "executor_config.headers: must"),
        ({"method": "GET", "url": "http://x/", "headers": "[1]"}, "executor_config.headers: must"),
        (
            {"method": "GET", "url": "http://x/", "headers": '["no colon"]'},
            'executor_config.headers: entry "no colon"',
        ),
        (
            {"method": "GET", "url": "http://x/", "expectCode": "200,abc"},
            "executor_config.expectCode",
        ),
        (
            {"method": "GET", "url": "http://x/", "expectBody": "(open"},
            "executor_config.expectBody",
        ),
        (
            {"method": "GET", "url": "http://x/", "tlsNoVerifyPeer": "yes"},
            'executor_config.tlsNoVerifyPeer: invalid boolean "yes"',
        ),
        (
            {"method": "GET", "url": "http://x/", "tlsCertificateFile": "c.pem"},
            "executor_config.tlsCertificateKeyFile: required",
        ),
        (
            {"method": "GET", "url": "http://x/", "tlsCertificateKeyFile": "k.pem"},
            "executor_config.tlsCertificateFile: required",
        ),
        (
            {"method": "GET", "url": "http://x/", "body": 3},
            "executor_config.body: must be a string",
        ),
    ],
)
def test_validation_names_the_bad_key(config: dict[str, str], message: str) -> None:
    assert HTTP is not None
    errors = HTTP.validate(config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message)


def test_invalid_timeout_is_not_a_validation_error_as_in_dkron() -> None:
    assert HTTP is not None
    assert HTTP.validate({"method": "GET", "url": "http://x/", "timeout": "abc"}) == []


# ------------------------------------------------------------------------------ TLS


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed, so no certificate can be made for the TLS case")
    directory = tmp_path_factory.mktemp("tls")
    server_cert, server_key = make_cert(directory, "server")
    client_cert, client_key = make_cert(directory, "client")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(client_cert)
    server = start_server(ctx)
    yield {
        "url": f"https://127.0.0.1:{server.server_address[1]}/echo",
        "ca": str(server_cert),
        "client_cert": str(client_cert),
        "client_key": str(client_key),
    }
    stop_server(server)


def test_tls_with_a_custom_root_ca_succeeds(tls: dict[str, str]) -> None:
    result = run({"method": "GET", "url": tls["url"], "tlsRootCAsFile": tls["ca"]})
    assert result.success, result.error
    assert json.loads(result.output)["method"] == "GET"


def test_tls_with_an_unknown_ca_fails_on_verification(tls: dict[str, str]) -> None:
    result = run({"method": "GET", "url": tls["url"]})
    assert not result.success
    assert "certificate" in result.error


def test_tls_no_verify_peer_accepts_the_self_signed_server(tls: dict[str, str]) -> None:
    assert run({"method": "GET", "url": tls["url"], "tlsNoVerifyPeer": "true"}).success


def test_tls_client_certificate_is_presented(tls: dict[str, str]) -> None:
    config = {
        "method": "GET",
        "url": tls["url"],
        "tlsRootCAsFile": tls["ca"],
        "tlsCertificateFile": tls["client_cert"],
        "tlsCertificateKeyFile": tls["client_key"],
    }
    result = run(config)
    assert result.success, result.error
    assert json.loads(result.output)["client_cert"] is True
    plain = run({"method": "GET", "url": tls["url"], "tlsRootCAsFile": tls["ca"]})
    assert json.loads(plain.output)["client_cert"] is False


def test_tls_with_a_missing_ca_file_fails_clearly(tls: dict[str, str], tmp_path: Path) -> None:
    result = run({"method": "GET", "url": tls["url"], "tlsRootCAsFile": str(tmp_path / "no.pem")})
    assert not result.success
    assert (
        result.error
        == f"http: cannot load TLS file {tmp_path / 'no.pem'}: no such file or directory"
    )


def test_tls_with_a_garbage_certificate_fails_clearly(tls: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    config = {
        "method": "GET",
        "url": tls["url"],
        "tlsCertificateFile": str(junk),
        "tlsCertificateKeyFile": str(junk),
    }
    result = run(config)
    assert not result.success
    assert result.error.startswith("http: cannot load TLS files:")
