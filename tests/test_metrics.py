"""/metrics text is valid Prometheus exposition; statsd lines reach a real UDP listener."""

import math
import shutil
import socket
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from dkron_pkg import metrics
from dkron_pkg.metrics import Registry, StatsdSink


def _families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def _demo_registry():
    reg = Registry()
    c = reg.counter("demo_runs_total", "Runs.\nSecond line with \\ backslash.", ["job_name"])
    g = reg.gauge("demo_running", "Running now.")
    h = reg.histogram("demo_latency_seconds", "Latency.", ["route"], buckets=(0.1, 1.0))
    s = reg.summary("demo_cost_seconds", "Cost.", ["job_name"])
    c.inc(job_name='we"ird\\name\nx')
    c.inc(2, job_name="plain")
    g.set(3)
    g.dec()
    for v in (0.05, 0.5, 0.7, 5.0):
        h.observe(v, route="/v1/jobs/:job")
    s.observe(1.5, job_name="plain")
    s.observe(2.5, job_name="plain")
    return reg


def test_exposition_parses_with_escaping_and_histogram_series():
    text = _demo_registry().render_prometheus()
    fams = _families(text)
    assert fams["demo_runs"].type == "counter"
    assert fams["demo_runs"].documentation == "Runs.\nSecond line with \\ backslash."
    assert _sample(text, "demo_runs_total", job_name='we"ird\\name\nx') == 1
    assert _sample(text, "demo_runs_total", job_name="plain") == 2
    assert _sample(text, "demo_running") == 2
    route = {"route": "/v1/jobs/:job"}
    assert _sample(text, "demo_latency_seconds_bucket", le="0.1", **route) == 1
    assert _sample(text, "demo_latency_seconds_bucket", le="1", **route) == 3
    assert _sample(text, "demo_latency_seconds_bucket", le="+Inf", **route) == 4
    assert _sample(text, "demo_latency_seconds_count", **route) == 4
    assert math.isclose(_sample(text, "demo_latency_seconds_sum", **route), 6.25)
    assert _sample(text, "demo_cost_seconds_sum", job_name="plain") == 4.0
    assert _sample(text, "demo_cost_seconds_count", job_name="plain") == 2
    assert "# TYPE demo_latency_seconds histogram" in text
    assert text.endswith("\n")


def test_default_registry_helpers_produce_dkron_metric_names():
    before = metrics.EXECUTIONS_SUCCEEDED.value(job_name="nightly")
    metrics.execution_finished("nightly", True, 2.0)
    metrics.execution_finished("nightly", False, 3.0)
    metrics.launch_lateness(0.004)
    metrics.set_running_executions(2)
    metrics.raft_commit_latency(0.002)
    metrics.leader_changed()
    metrics.set_members_by_state({"alive": 3, "failed": 1})
    metrics.set_members_by_state({"alive": 4})
    metrics.api_request("/v1/jobs/:job", "get", 404, 0.003)
    metrics.api_request("/v1/jobs", "BREW", 200, 0.001)
    text = metrics.REGISTRY.render_prometheus()
    assert _sample(text, "dkron_job_executions_succeeded_total", job_name="nightly") == before + 1
    assert _sample(text, "dkron_job_executions_failed_total", job_name="nightly") >= 1
    assert _sample(text, "dkron_executions_running") == 2
    assert _sample(text, "dkron_members", state="alive") == 4
    assert _sample(text, "dkron_members", state="failed") == 0
    assert _sample(text, "dkron_raft_leader_changes_total") >= 1
    assert _sample(text, "dkron_launch_lateness_seconds_bucket", le="0.005") >= 1
    assert _sample(text, "dkron_raft_commit_latency_seconds_count") >= 1
    labels = {"route": "/v1/jobs/:job", "method": "GET", "code": "4xx"}
    assert _sample(text, "dkron_api_requests_total", **labels) >= 1
    assert _sample(text, "dkron_api_requests_total", route="/v1/jobs", method="OTHER", code="2xx")
    assert _sample(text, "dkron_job_execution_duration_seconds_count", job_name="nightly") >= 2


def test_label_cardinality_is_bounded():
    reg = Registry()
    c = reg.counter("jobs_total", "Per job.", ["job_name"], max_series=3)
    for i in range(10):
        c.inc(job_name=f"job{i}")
    text = reg.render_prometheus()
    assert _sample(text, "jobs_total", job_name="_other") == 7
    assert _sample(text, "dkron_metrics_series_overflow_total", metric="jobs_total") == 7
    series = [
        s for f in text_string_to_metric_families(text) if f.name == "jobs" for s in f.samples
    ]
    assert len(series) == 4


def test_bad_definitions_and_updates_are_clear_errors():
    reg = Registry()
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("bad-name", "x")
    with pytest.raises(ValueError, match="invalid label name"):
        reg.counter("ok_total", "x", ["le"])
    c = reg.counter("ok_total", "x", ["job_name"])
    with pytest.raises(ValueError, match=r"takes labels \['job_name'\]"):
        c.inc(job="x")
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc(-1, job_name="x")
    with pytest.raises(ValueError, match="already registered differently"):
        reg.gauge("ok_total", "x")
    with pytest.raises(ValueError, match="expected host:port"):
        StatsdSink("no-port")


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20), st.integers(min_value=0, max_value=10**6), max_size=8
    ),
    st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), max_size=20),
)
def test_any_label_values_and_observations_parse_back(counts, observations):
    reg = Registry()
    c = reg.counter("any_total", "Any.", ["job_name"])
    h = reg.histogram("any_seconds", "Any.", buckets=(0.5, 10.0, 100.0))
    for name, n in counts.items():
        c.inc(n, job_name=name)
    for v in observations:
        h.observe(v)
    text = reg.render_prometheus()
    for name, n in counts.items():
        assert _sample(text, "any_total", job_name=name) == n
    assert _sample(text, "any_seconds_count") == len(observations)
    assert _sample(text, "any_seconds_bucket", le="10") == sum(v <= 10 for v in observations)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition():
    metrics.execution_finished("promtool-job", True, 1.0)
    metrics.api_request("/v1/members", "GET", 200, 0.01)
    for text in (metrics.REGISTRY.render_prometheus(), _demo_registry().render_prometheus()):
        proc = subprocess.run(
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def _receive_lines(sock, want):
    lines = []
    while len(lines) < want:
        data, _ = sock.recvfrom(65535)
        lines.extend(data.decode().split("\n"))
    return lines


def test_statsd_sink_sends_plain_statsd_lines_over_udp():
    listener = _udp_listener()
    reg = Registry()
    sink = StatsdSink(listener.getsockname(), dogstatsd=False, tags=["env:prod"])
    reg.add_sink(sink)
    reg.counter("dkron_job_executions_succeeded_total", "x", ["job_name"]).inc(job_name="a b|c")
    reg.gauge("dkron_executions_running", "x").set(4)
    reg.histogram("dkron_launch_lateness_seconds", "x").observe(0.25)
    assert sink.flush() == 1
    lines = _receive_lines(listener, 3)
    assert lines == [
        "dkron_job_executions_succeeded_total.a_b_c:1|c",
        "dkron_executions_running:4|g",
        "dkron_launch_lateness_seconds:250|ms",
    ]
    sink.close()
    listener.close()


def test_dogstatsd_sink_sends_labels_and_global_tags():
    listener = _udp_listener()
    reg = Registry()
    sink = StatsdSink(listener.getsockname(), dogstatsd=True, tags=["env:prod", "dc:eu"])
    reg.add_sink(sink)
    reg.counter("dkron_job_executions_failed_total", "x", ["job_name"]).inc(job_name="nightly")
    reg.gauge("dkron_members", "x", ["state"]).set(3, state="alive")
    sink.flush()
    lines = _receive_lines(listener, 2)
    assert lines == [
        "dkron_job_executions_failed_total:1|c|#job_name:nightly,env:prod,dc:eu",
        "dkron_members:3|g|#state:alive,env:prod,dc:eu",
    ]
    sink.close()
    listener.close()


def test_statsd_packets_stay_under_the_size_limit_and_background_flush_delivers():
    listener = _udp_listener()
    reg = Registry()
    sink = StatsdSink(listener.getsockname(), max_packet=200, flush_interval=0.05).start()
    reg.add_sink(sink)
    c = reg.counter("dkron_job_executions_succeeded_total", "x", ["job_name"])
    for i in range(40):
        c.inc(job_name=f"job{i:02d}")
    lines = []
    while len(lines) < 40:
        data, _ = listener.recvfrom(65535)
        assert len(data) <= 200
        lines.extend(data.decode().split("\n"))
    assert lines[0] == "dkron_job_executions_succeeded_total.job00:1|c"
    assert lines[-1] == "dkron_job_executions_succeeded_total.job39:1|c"
    sink.close()
    listener.close()
