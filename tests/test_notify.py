"""Notifications reach a real SMTP server and a real webhook server, when the policy says so."""

import asyncio
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from dkron_pkg import metrics
from dkron_pkg.notify import Notifier, parse_headers, should_notify

FAST = (0.01, 0.01, 0.01)

OK_RUN = {
    "id": "1767225600000000000-node1",
    "job_name": "backup",
    "started_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:00:05Z",
    "success": True,
    "output": "all good\n",
    "node_name": "node1",
    "group": 1767225600000000000,
    "attempt": 1,
}
FAILED_RUN = {**OK_RUN, "id": "1767225660000000000-node1", "success": False, "output": "boom"}
JOB = {"name": "backup", "owner_email": "ops@example.com", "metadata": {}}


def _config(**overrides):
    base = {
        "mail_host": "",
        "mail_port": 0,
        "mail_username": "",
        "mail_password": "",
        "mail_from": "dkron@example.com",
        "mail_payload": "",
        "mail_subject_prefix": "[dkron] ",
        "pre_webhook_endpoint": "",
        "pre_webhook_payload": "",
        "pre_webhook_headers": [],
        "webhook_endpoint": "",
        "webhook_payload": "",
        "webhook_headers": [],
        "notify_on": "always",
        "node_name": "leader1",
    }
    base.update(overrides)
    return SimpleNamespace(**base)


# ----------------------------------------------------------------- receivers


class _Hook:
    """A webhook receiver: records requests and answers with scripted status codes."""

    def __init__(self, statuses=(), gate=None):
        self.requests = []
        self.statuses = list(statuses)
        self.gate = gate
        self.entered = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.entered.set()
                if hook.gate is not None:
                    hook.gate.wait(10)
                hook.requests.append((self.path, dict(self.headers), body.decode()))
                code = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    receivers = []

    def make(statuses=(), gate=None):
        receivers.append(_Hook(statuses, gate))
        return receivers[-1]

    yield make
    for r in receivers:
        r.close()


class _Mailbox:
    """aiosmtpd on its own event loop thread, bound to 127.0.0.1 on a free port."""

    def __init__(self, **smtp_kwargs):
        self.messages = []
        self.logins = []
        self.tls_sessions = []
        self.connections = 0
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.tls_sessions.append(session.ssl is not None)
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            box.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password == b"s3cret:pw", handled=False)

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            def factory():
                box.connections += 1
                return SMTP(Handler(), authenticator=authenticator, **smtp_kwargs)

            self.server = self.loop.run_until_complete(
                self.loop.create_server(factory, "127.0.0.1", 0)
            )
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def mailbox():
    boxes = []

    def make(**kwargs):
        boxes.append(_Mailbox(**kwargs))
        return boxes[-1]

    yield make
    for b in boxes:
        b.close()


@pytest.fixture
def notifiers():
    made = []

    def make(config, **kwargs):
        kwargs.setdefault("retry_delays", FAST)
        made.append(Notifier(config, **kwargs))
        return made[-1]

    yield make
    for n in made:
        n.close(timeout=2)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=test"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


# ----------------------------------------------------------------- e-mail


def test_email_has_dkron_subject_and_rendered_body(mailbox, notifiers):
    box = mailbox()
    payload = "Job {{.JobName}} on {{.NodeName}}: {{.Status}}\n{{.Report}}Output: {{.Output}}"
    n = notifiers(_config(mail_host="127.0.0.1", mail_port=box.port, mail_payload=payload))
    n.post_execution(JOB, OK_RUN, previous_status="")
    assert n.wait_idle(10)
    assert len(box.messages) == 1
    sender, rcpts, msg = box.messages[0]
    assert sender == "dkron@example.com" and rcpts == ["ops@example.com"]
    assert msg["Subject"] == "[dkron] Success backup execution report"
    assert msg["X-Dkron-Execution"] == OK_RUN["id"]
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("Job backup on node1: success\nExecuted nodes: 1\n")
    assert (
        "\t[Node]: node1 [Start]: 2026-01-01T00:00:00Z [End]: 2026-01-01T00:00:05Z "
        "[Success]: true\n" in body
    )
    assert body.rstrip().endswith("Output: all good")


def test_email_uses_starttls_and_login_and_raw_output_body(mailbox, notifiers, tls_pair):
    server_ctx, client_ctx = tls_pair
    box = mailbox(tls_context=server_ctx, require_starttls=True)
    cfg = _config(
        mail_host="127.0.0.1",
        mail_port=box.port,
        mail_username="robot",
        mail_password="s3cret:pw",
        mail_subject_prefix="",
    )
    n = notifiers(cfg, ssl_context=client_ctx)
    job = {**JOB, "owner_email": "a@example.com, b@example.com"}
    n.post_execution(job, FAILED_RUN, previous_status="success")
    assert n.wait_idle(10)
    assert box.logins == [("robot", "s3cret:pw")]
    assert box.tls_sessions == [True]
    _, rcpts, msg = box.messages[0]
    assert rcpts == ["a@example.com", "b@example.com"]
    assert msg["Subject"] == "Failed backup execution report"
    assert msg.get_content().strip() == "boom"


def test_wrong_smtp_password_is_not_retried(mailbox, notifiers, tls_pair):
    server_ctx, client_ctx = tls_pair
    box = mailbox(tls_context=server_ctx, require_starttls=True)
    cfg = _config(
        mail_host="127.0.0.1", mail_port=box.port, mail_username="robot", mail_password="nope"
    )
    before = metrics.NOTIFICATIONS.value(channel="email", result="failed")
    n = notifiers(cfg, ssl_context=client_ctx)
    n.post_execution(JOB, FAILED_RUN, previous_status="")
    assert n.wait_idle(10)
    # smtplib tries each offered mechanism once, on one connection; no retry follows.
    assert box.connections == 1 and box.messages == []
    assert set(box.logins) == {("robot", "nope")}
    assert metrics.NOTIFICATIONS.value(channel="email", result="failed") == before + 1


def test_login_without_tls_is_allowed_only_to_loopback(mailbox, notifiers):
    box = mailbox(auth_require_tls=False)
    cfg = _config(
        mail_host="127.0.0.1", mail_port=box.port, mail_username="u", mail_password="s3cret:pw"
    )
    n = notifiers(cfg)
    n.post_execution(JOB, OK_RUN, previous_status="")
    assert n.wait_idle(10)
    assert box.logins == [("u", "s3cret:pw")] and box.tls_sessions == [False]
    assert len(box.messages) == 1


def test_no_email_without_owner_email(mailbox, notifiers):
    box = mailbox()
    n = notifiers(_config(mail_host="127.0.0.1", mail_port=box.port))
    n.post_execution({"name": "backup"}, OK_RUN, previous_status="")
    assert n.wait_idle(10)
    assert box.messages == []


# ----------------------------------------------------------------- webhooks


def test_webhook_posts_rendered_payload_with_headers_split_on_first_colon(hook, notifiers):
    h = hook()
    cfg = _config(
        webhook_endpoint=h.url,
        webhook_payload=(
            '{"job": "{{.JobName}}", "ok": {{.Success}}, "status": "{{.Status}}", '
            '"attempt": {{.Attempt}}, "id": "{{.ExecutionID}}", "by": "{{.ReportingNode}}", '
            '"out": {{json .Output}}, "at": "{{.FinishedAt}}"}'
        ),
        webhook_headers=[
            "Authorization: Bearer abc:def:ghi",
            "X-Url:https://example.com:8443/x",
            "Content-Type: application/json",
            "Host: hooks.example.com",
        ],
    )
    n = notifiers(cfg)
    n.post_execution(JOB, FAILED_RUN, previous_status="success")
    assert n.wait_idle(10)
    path, headers, body = h.requests[0]
    assert path == "/hook"
    assert headers["Authorization"] == "Bearer abc:def:ghi"
    assert headers["X-Url"] == "https://example.com:8443/x"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == "hooks.example.com"
    assert json.loads(body) == {
        "job": "backup",
        "ok": False,
        "status": "failed",
        "attempt": 1,
        "id": FAILED_RUN["id"],
        "by": "leader1",
        "out": "boom",
        "at": "2026-01-01T00:00:05Z",
    }


def test_pre_webhook_fires_before_the_run_whatever_the_policy(hook, notifiers):
    h = hook()
    cfg = _config(
        notify_on="failure",
        pre_webhook_endpoint=h.url,
        pre_webhook_payload="{{.JobName}} {{.Status}} on {{.NodeName}}",
        pre_webhook_headers=["X-Token: t"],
    )
    n = notifiers(cfg)
    n.pre_execution(JOB, {**OK_RUN, "finished_at": "0001-01-01T00:00:00Z", "output": ""})
    n.post_execution(JOB, OK_RUN, previous_status="")  # no post webhook configured
    assert n.wait_idle(10)
    assert [(r[1]["X-Token"], r[2]) for r in h.requests] == [("t", "backup running on node1")]


def test_failed_deliveries_are_retried_then_delivered(hook, notifiers):
    h = hook(statuses=[500, 503])
    before = metrics.NOTIFICATIONS.value(channel="webhook", result="ok")
    n = notifiers(_config(webhook_endpoint=h.url, webhook_payload="{{.JobName}}"))
    n.post_execution(JOB, OK_RUN, previous_status="")
    assert n.wait_idle(10)
    assert [r[2] for r in h.requests] == ["backup"] * 3
    assert metrics.NOTIFICATIONS.value(channel="webhook", result="ok") == before + 1


def test_retries_are_bounded_and_client_errors_are_final(hook, notifiers):
    failing = hook(statuses=[500] * 10)
    missing = hook(statuses=[404] * 10)
    before = metrics.NOTIFICATIONS.value(channel="webhook", result="failed")
    a = notifiers(_config(webhook_endpoint=failing.url, webhook_payload="x"))
    b = notifiers(_config(webhook_endpoint=missing.url, webhook_payload="x"))
    a.post_execution(JOB, OK_RUN, previous_status="")
    b.post_execution(JOB, OK_RUN, previous_status="")
    assert a.wait_idle(10) and b.wait_idle(10)
    assert len(failing.requests) == len(FAST) + 1
    assert len(missing.requests) == 1
    assert metrics.NOTIFICATIONS.value(channel="webhook", result="failed") == before + 2


def test_unreachable_endpoint_gives_up_without_raising(notifiers):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    n = notifiers(_config(webhook_endpoint=f"http://127.0.0.1:{port}/", webhook_payload="x"))
    n.post_execution(JOB, OK_RUN, previous_status="")
    assert n.wait_idle(10)
    assert n.pending() == 0


def test_enqueueing_never_waits_for_a_slow_endpoint(hook, notifiers):
    gate = threading.Event()
    h = hook(gate=gate)
    n = notifiers(_config(webhook_endpoint=h.url, webhook_payload="{{.ExecutionID}}"))
    for i in range(5):
        n.post_execution(JOB, {**OK_RUN, "id": f"run{i}"}, previous_status="")
    # All five calls returned while the receiver still holds the first request.
    assert h.entered.wait(10)
    assert h.requests == [] and n.pending() == 5
    gate.set()
    assert n.wait_idle(10)
    assert [r[2] for r in h.requests] == [f"run{i}" for i in range(5)]


def test_close_drops_what_cannot_be_delivered_in_time(hook):
    h = hook(statuses=[500] * 10)
    n = Notifier(_config(webhook_endpoint=h.url, webhook_payload="x"), retry_delays=(30.0,))
    n.post_execution(JOB, OK_RUN, previous_status="")
    assert h.entered.wait(10)
    assert n.close(timeout=0.2) is False
    assert len(h.requests) == 1
    n.post_execution(JOB, OK_RUN, previous_status="")  # after close: ignored, no error
    idle = Notifier(_config())
    assert idle.close(timeout=1) is True


# ----------------------------------------------------------------- policies


def test_fail_fail_succeed_sends_one_failure_and_one_recovery_under_change(
    hook, mailbox, notifiers
):
    h = hook()
    box = mailbox()
    cfg = _config(
        notify_on="change",
        webhook_endpoint=h.url,
        webhook_payload="{{.Status}} was={{.PreviousStatus}}",
        mail_host="127.0.0.1",
        mail_port=box.port,
    )
    n = notifiers(cfg)
    status = ""  # the job's status before each run, as the store keeps it
    for run in (FAILED_RUN, FAILED_RUN, OK_RUN, OK_RUN):
        n.post_execution(JOB, run, previous_status=status)
        status = "success" if run["success"] else "failed"
    assert n.wait_idle(10)
    assert [r[2] for r in h.requests] == ["failed was=", "recovered was=failed"]
    subjects = [m[2]["Subject"] for m in box.messages]
    assert subjects == [
        "[dkron] Failed backup execution report",
        "[dkron] Success backup execution report",
    ]


def test_failure_policy_and_job_metadata_override(hook, notifiers):
    h = hook()
    n = notifiers(
        _config(notify_on="failure", webhook_endpoint=h.url, webhook_payload="{{.JobName}}")
    )
    n.post_execution(JOB, OK_RUN, previous_status="failed")
    n.post_execution(JOB, FAILED_RUN, previous_status="success")
    always = {**JOB, "name": "chatty", "metadata": {"notify_on": "always"}}
    n.post_execution(always, OK_RUN, previous_status="success")
    never = {**JOB, "name": "silent", "metadata": {"notify_on": "never"}}
    n.post_execution(never, FAILED_RUN, previous_status="success")
    typo = {**JOB, "name": "typo", "metadata": {"notify_on": "sometimes"}}
    n.post_execution(typo, FAILED_RUN, previous_status="")  # falls back to "failure"
    assert n.wait_idle(10)
    assert [r[2] for r in h.requests] == ["backup", "chatty", "typo"]


@pytest.mark.parametrize(
    ("policy", "success", "previous", "expected"),
    [
        ("always", True, "success", True),
        ("failure", True, "failed", False),
        ("failure", False, "failed", True),
        ("change", False, "", True),
        ("change", True, "", False),
        ("change", False, "success", True),
        ("change", False, "failed", False),
        ("change", False, "partially_failed", False),
        ("change", True, "partially_failed", True),
        ("change", True, "success", False),
        ("never", False, "success", False),
    ],
)
def test_should_notify_table(policy, success, previous, expected):
    assert should_notify(policy, success, previous) is expected


# ----------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"notify_on": "sometimes"}, 'invalid notify_on "sometimes"'),
        (
            {"webhook_payload": "{{.JobNmae}}"},
            "invalid webhook_payload: template webhook_payload:1",
        ),
        ({"mail_payload": "{{range .X}}{{end}}"}, "{{range}} is not supported"),
        ({"pre_webhook_endpoint": "ftp://x/"}, 'invalid pre_webhook_endpoint "ftp://x/"'),
        ({"webhook_headers": ["NoColon"]}, 'invalid webhook_headers entry "NoColon"'),
        ({"webhook_headers": ["Bad Name: v"]}, 'invalid webhook_headers entry "Bad Name: v"'),
        ({"mail_port": "smtp"}, 'invalid mail_port "smtp"'),
    ],
)
def test_bad_configuration_is_a_clear_error(overrides, words):
    with pytest.raises(ValueError) as err:
        Notifier(_config(**overrides))
    assert words in str(err.value)


def test_header_parsing_keeps_colons_in_values():
    assert parse_headers(["A: b:c", "X:y", "Empty:"], "webhook_headers") == [
        ("A", "b:c"),
        ("X", "y"),
        ("Empty", ""),
    ]
    with pytest.raises(ValueError, match="line breaks"):
        parse_headers(["A: b\r\nInjected: 1"], "webhook_headers")


def test_report_lists_every_execution_of_the_run(hook, notifiers):
    h = hook()
    n = notifiers(_config(webhook_endpoint=h.url, webhook_payload="{{.Report}}"))
    other = {**FAILED_RUN, "node_name": "node2"}
    n.post_execution(JOB, OK_RUN, previous_status="", group=[OK_RUN, other])
    assert n.wait_idle(10)
    assert h.requests[0][2] == (
        "Executed nodes: 2\n"
        "\t[Node]: node1 [Start]: 2026-01-01T00:00:00Z [End]: 2026-01-01T00:00:05Z "
        "[Success]: true\n"
        "\t[Node]: node2 [Start]: 2026-01-01T00:00:00Z [End]: 2026-01-01T00:00:05Z "
        "[Success]: false\n"
    )
