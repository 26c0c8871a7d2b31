"""E-mail, webhook and pre-webhook notifications for executions, delivered off the caller's thread.

Dkron's agent config keys (attributes of `config`, missing ones count as unset): mail_host,
mail_port, mail_username, mail_password, mail_from, mail_payload, mail_subject_prefix,
pre_webhook_endpoint, pre_webhook_payload, pre_webhook_headers, webhook_endpoint,
webhook_payload, webhook_headers, plus ours: notify_on and node_name (the reporting node).

`Notifier(config)` validates the config (bad templates, headers, URLs or policy raise
ValueError naming the key) and starts one worker thread. `pre_execution(job, execution)` and
`post_execution(job, execution, previous_status)` only render and enqueue, so they never wait
on the network. The agent calls `post_execution` once per final execution record (after the
last attempt), passing the job's `status` from before this execution, and optionally
`group=` (every execution of that run, for `{{.Report}}`); `close(timeout)` stops.

When (beyond Dkron, #712): `notify_on` is "always" (default, Dkron's behaviour), "failure"
(only failed executions) or "change" (a failure after a success, a success after a failure;
a job's first run counts only if it failed). A job overrides it with
`metadata["notify_on"]`, which may also be "never". "partially_failed" counts as failed. The
policy applies to e-mail and webhook; the pre-webhook always fires when configured.

What (as Dkron): e-mail when mail_host, mail_port and the job's owner_email are set (several
addresses may be comma-separated); subject `<mail_subject_prefix><Success|Failed> <job>
execution report`, body = rendered mail_payload or else the output. STARTTLS is used whenever
the server offers it (port 465 = TLS from the start); login happens when mail_username is set,
and credentials are never sent unencrypted except to a loopback host. Webhook and pre-webhook:
POST of the rendered payload to the endpoint with the configured headers ("Name: value"; split
on the first colon only, so values may contain colons, unlike Dkron; `Host` sets the Host).

Templates (see gotemplate): Report, JobName, ReportingNode, StartTime, FinishedAt, Success
("true"/"false"), NodeName, Output (Dkron's), and ours: Status ("running" before a run, then
"success", "failed" or "recovered"), PreviousStatus, Attempt, ExecutionID. Times are RFC 3339.

Delivery: network errors, HTTP 5xx/408/429 and SMTP 4xx are retried after `retry_delays`
(default 1 s, 5 s, 30 s: four attempts); other errors are final. Every outcome is logged and
counted in `dkron_notifications_total{channel,result}`. At most `max_queue` deliveries wait.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from . import logs, metrics
from .gotemplate import Template, TemplateError

log = logging.getLogger("dkron.notify")

POLICIES = ("always", "failure", "change")
JOB_POLICIES = (*POLICIES, "never")
TEMPLATE_FIELDS = frozenset(
    {
        "Report",
        "JobName",
        "ReportingNode",
        "StartTime",
        "FinishedAt",
        "Success",
        "NodeName",
        "Output",
        "Status",
        "PreviousStatus",
        "Attempt",
        "ExecutionID",
    }
)
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_HEADER_NAME_OK = set(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class PermanentError(Exception):
    """A delivery error that retrying cannot fix (bad credentials, HTTP 404, ...)."""


def parse_headers(entries: Sequence[str] | None, key: str) -> list[tuple[str, str]]:
    """`Name: value` strings to pairs, split on the first colon; ValueError naming the entry."""
    pairs = []
    for entry in entries or []:
        name, sep, value = str(entry).partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not set(name) <= _HEADER_NAME_OK:
            raise ValueError(f'invalid {key} entry "{entry}": expected "Name: value"')
        if "\r" in value or "\n" in value:
            raise ValueError(f'invalid {key} entry "{entry}": line breaks are not allowed')
        pairs.append((name, value))
    return pairs


def outcome_of(status: str | None) -> str | None:
    """A job status as "success", "failed" or None (never ran / unknown)."""
    if status == "success":
        return "success"
    if status in ("failed", "partially_failed"):
        return "failed"
    return None


def should_notify(policy: str, success: bool, previous_status: str | None) -> bool:
    """The notification policy: always, failure, change or never."""
    outcome = "success" if success else "failed"
    if policy == "never":
        return False
    if policy == "failure":
        return outcome == "failed"
    if policy == "change":
        previous = outcome_of(previous_status)
        return outcome == "failed" if previous is None else outcome != previous
    return True


def report(executions: Sequence[Mapping[str, Any]]) -> str:
    """Dkron's multi-line summary of an execution group."""
    lines = [f"Executed nodes: {len(executions)}"]
    for ex in executions:
        ok = "true" if ex.get("success") else "false"
        lines.append(
            f"\t[Node]: {ex.get('node_name', '')} [Start]: {ex.get('started_at', '')} "
            f"[End]: {ex.get('finished_at', '')} [Success]: {ok}"
        )
    return "\n".join(lines) + "\n"


def template_data(
    job: Mapping[str, Any],
    execution: Mapping[str, Any],
    reporting_node: str,
    status: str,
    previous_status: str = "",
    group: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "Report": report(group if group else [execution]),
        "JobName": str(job.get("name") or execution.get("job_name") or ""),
        "ReportingNode": reporting_node,
        "StartTime": str(execution.get("started_at") or ""),
        "FinishedAt": str(execution.get("finished_at") or ""),
        "Success": "true" if execution.get("success") else "false",
        "NodeName": str(execution.get("node_name") or ""),
        "Output": str(execution.get("output") or ""),
        "Status": status,
        "PreviousStatus": previous_status or "",
        "Attempt": int(execution.get("attempt") or 1),
        "ExecutionID": str(execution.get("id") or ""),
    }


def _template(config: Any, key: str) -> Template | None:
    text = getattr(config, key, None)
    if not text:
        return None
    try:
        tpl = Template(str(text), name=key)
        tpl.check_fields(TEMPLATE_FIELDS)
    except TemplateError as exc:
        raise ValueError(f"invalid {key}: {exc}") from None
    return tpl


def _endpoint(config: Any, key: str) -> str:
    url = str(getattr(config, key, None) or "")
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f'invalid {key} "{url}": expected an http:// or https:// URL')
    return url


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    channel: str = field(compare=False)
    job_name: str = field(compare=False)
    send: Callable[[], None] = field(compare=False)
    attempt: int = field(default=1, compare=False)


class Notifier:
    """Renders notifications for executions and delivers them from a background thread."""

    def __init__(
        self,
        config: Any,
        *,
        retry_delays: Sequence[float] = (1.0, 5.0, 30.0),
        timeout: float = 10.0,
        max_queue: int = 10000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = str(getattr(config, "notify_on", None) or "always").lower()
        if self.policy not in POLICIES:
            raise ValueError(
                f'invalid notify_on "{self.policy}": expected one of {", ".join(POLICIES)}'
            )
        self.reporting_node = str(getattr(config, "node_name", None) or socket.gethostname())
        self.mail_host = str(getattr(config, "mail_host", None) or "")
        port = getattr(config, "mail_port", None) or 0
        try:
            self.mail_port = int(port)
        except (TypeError, ValueError):
            raise ValueError(f'invalid mail_port "{port}": expected a port number') from None
        self.mail_username = str(getattr(config, "mail_username", None) or "")
        self.mail_password = str(getattr(config, "mail_password", None) or "")
        self.mail_from = str(getattr(config, "mail_from", None) or "")
        self.mail_subject_prefix = str(getattr(config, "mail_subject_prefix", None) or "")
        self.mail_payload = _template(config, "mail_payload")
        self.webhook_endpoint = _endpoint(config, "webhook_endpoint")
        self.webhook_payload = _template(config, "webhook_payload")
        self.webhook_headers = parse_headers(
            getattr(config, "webhook_headers", None), "webhook_headers"
        )
        self.pre_webhook_endpoint = _endpoint(config, "pre_webhook_endpoint")
        self.pre_webhook_payload = _template(config, "pre_webhook_payload")
        self.pre_webhook_headers = parse_headers(
            getattr(config, "pre_webhook_headers", None), "pre_webhook_headers"
        )
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.timeout = timeout
        self.max_queue = max_queue
        self.ssl_context = ssl_context or ssl.create_default_context()

        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._dropped = 0
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- deciding and rendering

    def policy_for(self, job: Mapping[str, Any]) -> str:
        """The job's `metadata["notify_on"]` if valid, else the global policy."""
        value = ((job.get("metadata") or {}).get("notify_on") or "").strip().lower()
        if not value:
            return self.policy
        if value not in JOB_POLICIES:
            log.warning(
                'job %s: metadata notify_on "%s" is not one of %s; using "%s"',
                job.get("name"),
                value,
                ", ".join(JOB_POLICIES),
                self.policy,
            )
            return self.policy
        return value

    def pre_execution(self, job: Mapping[str, Any], execution: Mapping[str, Any]) -> None:
        """Queue the pre-webhook for a run that is starting."""
        if not (self.pre_webhook_endpoint and self.pre_webhook_payload):
            return
        data = template_data(job, execution, self.reporting_node, "running")
        body = self._render(self.pre_webhook_payload, data, "pre_webhook", data["JobName"])
        if body is not None:
            url, headers = self.pre_webhook_endpoint, self.pre_webhook_headers
            self._enqueue("pre_webhook", data["JobName"], lambda: self._post(url, body, headers))

    def post_execution(
        self,
        job: Mapping[str, Any],
        execution: Mapping[str, Any],
        previous_status: str,
        group: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Queue e-mail and webhook for a finished execution if the policy says so."""
        success = bool(execution.get("success"))
        if not should_notify(self.policy_for(job), success, previous_status):
            return
        if not success:
            status = "failed"
        elif outcome_of(previous_status) == "failed":
            status = "recovered"
        else:
            status = "success"
        data = template_data(job, execution, self.reporting_node, status, previous_status, group)
        job_name = data["JobName"]
        recipients = [a.strip() for a in str(job.get("owner_email") or "").split(",") if a.strip()]
        if self.mail_host and self.mail_port and recipients:
            body = (
                self._render(self.mail_payload, data, "email", job_name)
                if self.mail_payload
                else data["Output"]
            )
            if body is not None:
                message = self._message(data, recipients, body)
                self._enqueue("email", job_name, lambda: self._send_mail(message, recipients))
        if self.webhook_endpoint and self.webhook_payload:
            body = self._render(self.webhook_payload, data, "webhook", job_name)
            if body is not None:
                url, headers = self.webhook_endpoint, self.webhook_headers
                self._enqueue("webhook", job_name, lambda: self._post(url, body, headers))

    def _render(self, tpl: Template, data: dict, channel: str, job_name: str) -> str | None:
        try:
            return tpl.render(data)
        except TemplateError as exc:
            self._give_up(channel, job_name, 0, str(exc))
            return None

    def _message(self, data: dict, recipients: list[str], body: str) -> EmailMessage:
        word = "Failed" if data["Status"] == "failed" else "Success"
        msg = EmailMessage()
        msg["Subject"] = f"{self.mail_subject_prefix}{word} {data['JobName']} execution report"
        msg["From"] = self.mail_from or f"dkron@{socket.gethostname()}"
        msg["To"] = ", ".join(recipients)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="dkron.local")
        msg["X-Dkron-Job"] = data["JobName"]
        msg["X-Dkron-Execution"] = data["ExecutionID"]
        msg.set_content(body)
        return msg

    # -------------------------------------------------------------- transports

    def _post(self, url: str, body: str, headers: list[tuple[str, str]]) -> None:
        request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST")
        for name, value in headers:
            request.add_header(name, value)
        context = self.ssl_context if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as resp:
                resp.read(65536)
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise PermanentError(f"HTTP {exc.code} {exc.reason}") from None
            raise OSError(f"HTTP {exc.code} {exc.reason}") from None

    def _send_mail(self, message: EmailMessage, recipients: list[str]) -> None:
        implicit_tls = self.mail_port == 465
        try:
            if implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.mail_host, self.mail_port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                smtp = smtplib.SMTP(self.mail_host, self.mail_port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                secure = implicit_tls
                if not secure and smtp.has_extn("starttls"):
                    smtp.starttls(context=self.ssl_context)
                    smtp.ehlo()
                    secure = True
                if self.mail_username:
                    if not secure and self.mail_host not in _LOOPBACK:
                        raise PermanentError(
                            "refusing to send SMTP credentials without TLS "
                            "(the server does not offer STARTTLS)"
                        )
                    smtp.login(self.mail_username, self.mail_password)
                smtp.send_message(message, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipients refused: {exc.recipients}") from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if exc.smtp_error else ""
            if 400 <= exc.smtp_code < 500:
                raise OSError(f"SMTP {exc.smtp_code} {text}") from None
            raise PermanentError(f"SMTP {exc.smtp_code} {text}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(str(exc)) from None

    # -------------------------------------------------------------- queue and worker

    def _enqueue(self, channel: str, job_name: str, send: Callable[[], None]) -> None:
        with self._cond:
            if self._closing:
                self._give_up(channel, job_name, 0, "notifier is closed")
                return
            if len(self._heap) >= self.max_queue:
                self._give_up(channel, job_name, 0, f"queue full ({self.max_queue})")
                return
            d = _Delivery(time.monotonic(), next(self._seq), channel, job_name, send)
            heapq.heappush(self._heap, d)
            self._cond.notify()

    def _give_up(self, channel: str, job_name: str, attempt: int, reason: str) -> None:
        metrics.notification_sent(channel, False)
        logs.event_at(
            "warn", "notify_failed", channel=channel, job=job_name, attempt=attempt, error=reason
        )

    def _next(self) -> _Delivery | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._busy = True
                    return heapq.heappop(self._heap)
                if self._closing and (not self._heap or self._heap[0].due > self._deadline):
                    for d in self._heap:
                        self._dropped += 1
                        self._give_up(d.channel, d.job_name, d.attempt, "dropped at shutdown")
                    self._heap.clear()
                    return None
                wait = self._heap[0].due - now if self._heap else None
                if self._closing:
                    wait = min(wait if wait is not None else 0.1, max(self._deadline - now, 0))
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            d = self._next()
            if d is None:
                return
            try:
                d.send()
            except PermanentError as exc:
                self._give_up(d.channel, d.job_name, d.attempt, str(exc))
            except Exception as exc:  # noqa: BLE001 - any transport error is retried, bounded
                if d.attempt > len(self.retry_delays):
                    self._give_up(d.channel, d.job_name, d.attempt, str(exc))
                else:
                    logs.event_at(
                        "info",
                        "notify_retry",
                        channel=d.channel,
                        job=d.job_name,
                        attempt=d.attempt,
                        error=str(exc),
                    )
                    with self._cond:
                        d.due = time.monotonic() + self.retry_delays[d.attempt - 1]
                        d.attempt += 1
                        heapq.heappush(self._heap, d)
            else:
                metrics.notification_sent(d.channel, True)
                logs.event_at(
                    "debug", "notify_sent", channel=d.channel, job=d.job_name, attempt=d.attempt
                )
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def pending(self) -> int:
        """Deliveries queued or in flight (retries included)."""
        with self._cond:
            return len(self._heap) + (1 if self._busy else 0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking work, deliver what can be delivered within `timeout`, drop the rest.

        Returns True when everything queued was delivered or settled.
        """
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive() and self._dropped == 0
