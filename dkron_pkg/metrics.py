"""Counters, gauges, histograms and summaries for `/metrics` and statsd, without dependencies.

Operators point Prometheus at `/metrics` (`--enable-prometheus`) or run a statsd/DogStatsD agent
(`--statsd-addr`, `--dog-statsd-addr`); both read the same `Registry`.

Use: the module-level `REGISTRY` holds Dkron's metrics; the agent calls the helpers below
(`execution_finished`, `launch_lateness`, `set_running_executions`, `raft_commit_latency`,
`leader_changed`, `set_members_by_state`, `api_request`, `notification_sent`,
`processor_failed`, `crontab_file_refused`) and serves `REGISTRY.render_prometheus()` with content type
`PROMETHEUS_CONTENT_TYPE`. For statsd, `REGISTRY.add_sink(StatsdSink(...).start())`.

Label cardinality is bounded: every metric has `max_series`; a label set beyond it is counted
under the label values "_other" and in `dkron_metrics_series_overflow_total{metric}`, so a
flood of job names or URL paths cannot grow memory without bound. Per-job metrics allow 10,000
jobs. API metrics take the *route template* (for example `/v1/jobs/:job`, never the raw path)
and an HTTP method from a fixed list; the status code is kept as its class (`2xx`).
Histograms are not labelled by job (buckets x jobs would be too many series); per-job cost is a
summary (`_sum`, `_count`) of execution durations.
"""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OVERFLOW_VALUE = "_other"

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Sink(Protocol):
    """Receives every update as it happens (statsd forwards them over UDP)."""

    def record(self, kind: str, name: str, value: float, labels: Mapping[str, str]) -> None: ...


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers plainly, +Inf/-Inf/NaN by name."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Metric:
    """One metric family: a name, help text, label names and its series."""

    kind = "untyped"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        max_series: int = 1000,
    ) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}: use letters, digits, _ and :")
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__") or label in ("le", "quantile"):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if max_series < 1:
            raise ValueError(f"max_series for {name} must be at least 1")
        self.registry = registry
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], object] = {}

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def _slot(self, key: tuple[str, ...], new: object) -> tuple[tuple[str, ...], bool]:
        """Return the key to use (the overflow key when full) and whether it overflowed. Locked."""
        if key in self._series or len(self._series) < self.max_series:
            self._series.setdefault(key, new)
            return key, False
        other = tuple(OVERFLOW_VALUE for _ in key)
        self._series.setdefault(other, new)
        return other, True

    def _emit(self, kind: str, value: float, key: tuple[str, ...]) -> None:
        self.registry._emit(kind, self.name, value, dict(zip(self.labelnames, key, strict=True)))

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        raise NotImplementedError


class Counter(Metric):
    """A value that only goes up (resets only when the process restarts)."""

    kind = "counter"

    def inc(self, amount: float = 1, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (got {amount})")
        with self._lock:
            key, overflow = self._slot(self._key(labels), 0)
            self._series[key] += amount  # type: ignore[operator]
        if overflow:
            self.registry._overflowed(self.name)
        self._emit("counter", amount, key)

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._series.get(self._key(labels), 0)  # type: ignore[return-value]

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            items = sorted(self._series.items())
        if not items and not self.labelnames:
            items = [((), 0)]
        return [(self.name, dict(zip(self.labelnames, k, strict=True)), v) for k, v in items]


class Gauge(Metric):
    """A value that goes up and down (running executions, members by state)."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        with self._lock:
            key, overflow = self._slot(self._key(labels), 0)
            self._series[key] = value
        if overflow:
            self.registry._overflowed(self.name)
        self._emit("gauge", value, key)

    def inc(self, amount: float = 1, **labels: object) -> None:
        with self._lock:
            key, overflow = self._slot(self._key(labels), 0)
            self._series[key] += amount  # type: ignore[operator]
            value = self._series[key]
        if overflow:
            self.registry._overflowed(self.name)
        self._emit("gauge", value, key)  # type: ignore[arg-type]

    def dec(self, amount: float = 1, **labels: object) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._series.get(self._key(labels), 0)  # type: ignore[return-value]

    def label_sets(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(zip(self.labelnames, k, strict=True)) for k in self._series]

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            items = sorted(self._series.items())
        if not items and not self.labelnames:
            items = [((), 0)]
        return [(self.name, dict(zip(self.labelnames, k, strict=True)), v) for k, v in items]


class _HistState:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, nbuckets: int) -> None:
        self.counts = [0] * nbuckets
        self.sum = 0.0
        self.count = 0


class Histogram(Metric):
    """Observations counted into cumulative buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
        max_series: int = 1000,
    ) -> None:
        super().__init__(registry, name, help_text, labelnames, max_series)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name} needs distinct finite bucket bounds")
        self.buckets = tuple(bounds)

    def observe(self, value: float, **labels: object) -> None:
        with self._lock:
            key, overflow = self._slot(self._key(labels), None)
            state = self._series[key]
            if state is None:
                state = self._series[key] = _HistState(len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    state.counts[i] += 1  # type: ignore[attr-defined]
                    break
            state.sum += value  # type: ignore[attr-defined]
            state.count += 1  # type: ignore[attr-defined]
        if overflow:
            self.registry._overflowed(self.name)
        self._emit("histogram", value, key)

    def count(self, **labels: object) -> int:
        with self._lock:
            state = self._series.get(self._key(labels))
            return state.count if state else 0  # type: ignore[attr-defined]

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            items = [
                (k, list(s.counts), s.sum, s.count)  # type: ignore[attr-defined]
                for k, s in sorted(self._series.items())
            ]
        if not items and not self.labelnames:
            items = [((), [0] * len(self.buckets), 0.0, 0)]
        out: list[tuple[str, dict[str, str], float]] = []
        for key, counts, total, count in items:
            base = dict(zip(self.labelnames, key, strict=True))
            running = 0
            for bound, c in zip(self.buckets, counts, strict=True):
                running += c
                out.append((self.name + "_bucket", {**base, "le": format_value(bound)}, running))
            out.append((self.name + "_bucket", {**base, "le": "+Inf"}, count))
            out.append((self.name + "_sum", base, total))
            out.append((self.name + "_count", base, count))
        return out


class Summary(Metric):
    """Sum and count of observations (no quantiles): cheap enough to keep per job."""

    kind = "summary"

    def observe(self, value: float, **labels: object) -> None:
        with self._lock:
            key, overflow = self._slot(self._key(labels), None)
            if self._series[key] is None:
                self._series[key] = [0.0, 0]
            state = self._series[key]
            state[0] += value  # type: ignore[index]
            state[1] += 1  # type: ignore[index]
        if overflow:
            self.registry._overflowed(self.name)
        self._emit("histogram", value, key)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            items = [(k, list(s)) for k, s in sorted(self._series.items())]  # type: ignore[call-overload]
        if not items and not self.labelnames:
            items = [((), [0.0, 0])]
        out: list[tuple[str, dict[str, str], float]] = []
        for key, (total, count) in items:
            base = dict(zip(self.labelnames, key, strict=True))
            out.append((self.name + "_sum", base, total))
            out.append((self.name + "_count", base, count))
        return out


class Registry:
    """A set of metric families, rendered together; sinks see every update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Metric] = {}
        self._sinks: list[Sink] = []
        self._overflow: Counter | None = None

    def _add(self, metric: Metric) -> Metric:
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is not None:
                if type(existing) is not type(metric) or existing.labelnames != metric.labelnames:
                    raise ValueError(f"metric {metric.name} already registered differently")
                return existing
            self._metrics[metric.name] = metric
            return metric

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = (), **kw) -> Counter:
        return self._add(Counter(self, name, help_text, labelnames, **kw))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = (), **kw) -> Gauge:
        return self._add(Gauge(self, name, help_text, labelnames, **kw))  # type: ignore[return-value]

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), **kw
    ) -> Histogram:
        return self._add(Histogram(self, name, help_text, labelnames, **kw))  # type: ignore[return-value]

    def summary(self, name: str, help_text: str, labelnames: Sequence[str] = (), **kw) -> Summary:
        return self._add(Summary(self, name, help_text, labelnames, **kw))  # type: ignore[return-value]

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def _emit(self, kind: str, name: str, value: float, labels: Mapping[str, str]) -> None:
        for sink in list(self._sinks):
            sink.record(kind, name, value, labels)

    def _overflowed(self, metric_name: str) -> None:
        if metric_name == "dkron_metrics_series_overflow_total":
            return
        if self._overflow is None:
            self._overflow = self.counter(
                "dkron_metrics_series_overflow_total",
                "Updates folded into the _other series because a metric reached max_series.",
                ["metric"],
            )
        self._overflow.inc(metric=metric_name)

    def render_prometheus(self) -> str:
        """The registry in Prometheus text exposition format 0.0.4."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        lines: list[str] = []
        for m in metrics:
            lines.append(f"# HELP {m.name} {escape_help(m.help)}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            for name, labels, value in m.samples():
                if labels:
                    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
                    lines.append(f"{name}{{{inner}}} {format_value(value)}")
                else:
                    lines.append(f"{name} {format_value(value)}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- statsd


_STATSD_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")
_TAG_BAD = re.compile(r"[|,#\s]")


def parse_addr(addr: str | tuple[str, int]) -> tuple[str, int]:
    """`host:port` (or a tuple) for the statsd flags; a clear ValueError otherwise."""
    if isinstance(addr, tuple):
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'invalid statsd address "{addr}": expected host:port')
    return host.strip("[]"), int(port)


class StatsdSink:
    """Buffers updates as statsd lines and sends them over UDP on `flush` (or every interval).

    Plain statsd has no tags, so label values are appended to the name
    (`dkron_job_executions_succeeded_total.backup`); DogStatsD gets them as tags together with
    the configured `tags` (`|#job_name:backup,env:prod`). Histograms of seconds are sent as
    timers in milliseconds (`|ms`). Packets stay under `max_packet` bytes; at most `max_lines`
    wait in the buffer (the oldest are dropped first), so a dead collector costs nothing.
    """

    def __init__(
        self,
        addr: str | tuple[str, int],
        dogstatsd: bool = False,
        tags: Iterable[str] = (),
        flush_interval: float = 1.0,
        max_packet: int = 1432,
        max_lines: int = 10000,
    ) -> None:
        self.addr = parse_addr(addr)
        self.dogstatsd = dogstatsd
        self.tags = [_TAG_BAD.sub("_", t) for t in tags] if dogstatsd else []
        self.flush_interval = flush_interval
        self.max_packet = max_packet
        self.max_lines = max_lines
        self.dropped = 0
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        family = socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)

    def format(self, kind: str, name: str, value: float, labels: Mapping[str, str]) -> str:
        if kind == "counter":
            suffix, shown = "c", value
        elif kind == "gauge":
            suffix, shown = "g", value
        elif name.endswith("_seconds"):
            suffix, shown = "ms", value * 1000.0
        else:
            suffix, shown = "h", value
        text = format_value(round(shown, 6) if isinstance(shown, float) else shown)
        if self.dogstatsd:
            tags = [f"{k}:{_TAG_BAD.sub('_', str(v))}" for k, v in labels.items()] + self.tags
            return f"{name}:{text}|{suffix}" + ("|#" + ",".join(tags) if tags else "")
        parts = [name] + [_STATSD_NAME_BAD.sub("_", str(v)) for v in labels.values()]
        return f"{'.'.join(parts)}:{text}|{suffix}"

    def record(self, kind: str, name: str, value: float, labels: Mapping[str, str]) -> None:
        line = self.format(kind, name, value, labels)
        with self._lock:
            self._lines.append(line)
            if len(self._lines) > self.max_lines:
                extra = len(self._lines) - self.max_lines
                del self._lines[:extra]
                self.dropped += extra

    def flush(self) -> int:
        """Send everything buffered; returns the number of packets sent."""
        with self._lock:
            lines, self._lines = self._lines, []
        packets: list[bytes] = []
        current = b""
        for line in lines:
            data = line.encode()[: self.max_packet]
            if current and len(current) + 1 + len(data) > self.max_packet:
                packets.append(current)
                current = b""
            current = current + b"\n" + data if current else data
        if current:
            packets.append(current)
        sent = 0
        for packet in packets:
            try:
                self._sock.sendto(packet, self.addr)
                sent += 1
            except OSError:
                self.dropped += packet.count(b"\n") + 1
        return sent

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def start(self) -> StatsdSink:
        """Flush every `flush_interval` seconds from a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="statsd-flush", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        self._sock.close()


# ---------------------------------------------------------------- Dkron's metrics

REGISTRY = Registry()

_JOB_SERIES = 10000
EXECUTIONS_SUCCEEDED = REGISTRY.counter(
    "dkron_job_executions_succeeded_total",
    "Finished executions that succeeded, per job.",
    ["job_name"],
    max_series=_JOB_SERIES,
)
EXECUTIONS_FAILED = REGISTRY.counter(
    "dkron_job_executions_failed_total",
    "Finished executions that failed, per job.",
    ["job_name"],
    max_series=_JOB_SERIES,
)
EXECUTION_DURATION = REGISTRY.summary(
    "dkron_job_execution_duration_seconds",
    "Time from start to finish of executions, per job (what each job costs).",
    ["job_name"],
    max_series=_JOB_SERIES,
)
LAUNCH_LATENESS = REGISTRY.histogram(
    "dkron_launch_lateness_seconds",
    "Actual launch time minus scheduled time.",
    buckets=LATENESS_BUCKETS,
)
RUNNING_EXECUTIONS = REGISTRY.gauge(
    "dkron_executions_running", "Executions started and not yet finished."
)
RAFT_COMMIT_LATENCY = REGISTRY.histogram(
    "dkron_raft_commit_latency_seconds",
    "Time from proposing a Raft entry to its commit.",
    buckets=LATENCY_BUCKETS,
)
LEADER_CHANGES = REGISTRY.counter(
    "dkron_raft_leader_changes_total", "Times this node saw the Raft leader change."
)
MEMBERS = REGISTRY.gauge(
    "dkron_members", "Gossip members known to this node, by state.", ["state"], max_series=16
)
API_LATENCY = REGISTRY.histogram(
    "dkron_api_request_duration_seconds",
    "REST API request latency by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    max_series=200,
)
API_REQUESTS = REGISTRY.counter(
    "dkron_api_requests_total",
    "REST API requests by route template, method and status class.",
    ["route", "method", "code"],
    max_series=1000,
)
NOTIFICATIONS = REGISTRY.counter(
    "dkron_notifications_total",
    "Notification deliveries by channel (email, webhook, pre_webhook) and result.",
    ["channel", "result"],
    max_series=32,
)
PROCESSOR_FAILURES = REGISTRY.counter(
    "dkron_processor_failures_total",
    "Processor runs that failed (the execution record was kept).",
    ["processor"],
    max_series=32,
)

CRONTAB_FILES_REFUSED = REGISTRY.counter(
    "dkron_crontab_files_refused_total",
    "Crontab files --crontab-sync refused as cron would (owner, mode, symlink), by reason.",
    ["reason"],
    max_series=16,
)

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def execution_finished(job_name: str, success: bool, duration_seconds: float | None = None) -> None:
    """Count a final execution record and its duration."""
    (EXECUTIONS_SUCCEEDED if success else EXECUTIONS_FAILED).inc(job_name=job_name)
    if duration_seconds is not None and duration_seconds >= 0:
        EXECUTION_DURATION.observe(duration_seconds, job_name=job_name)


def launch_lateness(seconds: float) -> None:
    LAUNCH_LATENESS.observe(max(0.0, seconds))


def set_running_executions(count: int) -> None:
    RUNNING_EXECUTIONS.set(count)


def raft_commit_latency(seconds: float) -> None:
    RAFT_COMMIT_LATENCY.observe(seconds)


def leader_changed() -> None:
    LEADER_CHANGES.inc()


def set_members_by_state(counts: Mapping[str, int]) -> None:
    """Replace the member counts; states no longer present drop to 0."""
    for labels in MEMBERS.label_sets():
        if labels["state"] not in counts:
            MEMBERS.set(0, state=labels["state"])
    for state, n in counts.items():
        MEMBERS.set(n, state=state)


def api_request(route: str, method: str, status: int, seconds: float) -> None:
    """Record one API call; `route` must be the template (`/v1/jobs/:job`), not the raw path."""
    method = method.upper() if method.upper() in _METHODS else "OTHER"
    API_LATENCY.observe(seconds, route=route, method=method)
    API_REQUESTS.inc(route=route, method=method, code=f"{int(status) // 100}xx")


def notification_sent(channel: str, ok: bool) -> None:
    NOTIFICATIONS.inc(channel=channel, result="ok" if ok else "failed")


def processor_failed(name: str) -> None:
    PROCESSOR_FAILURES.inc(processor=name)


def crontab_file_refused(reason: str) -> None:
    """Count a crontab file the sync would not load (reason: wrong_owner, insecure_mode...)."""
    CRONTAB_FILES_REFUSED.inc(reason=reason)
