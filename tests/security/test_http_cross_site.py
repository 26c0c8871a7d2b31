"""Finding 2: cross-site requests ran commands, and a DNS-rebinding page could read the API.

A page on another site can make the browser POST to 127.0.0.1 (text/plain needs no preflight)
and, after rebinding its own name to 127.0.0.1, send requests with `Host: evil.example` and
read the answers. Each test here failed on the code before issue 16 (201 / 200 / echoed
Origin) and passes now.
"""

from __future__ import annotations

import json
import logging

import pytest
from agent_support import shell_job, start_agent

from .http_raw import exchange, head

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    agent, client = start_agent(tmp_path_factory.mktemp("cross-site"))
    yield agent, client
    agent.stop()


def test_cross_site_post_cannot_create_or_run_a_job(node, tmp_path):
    agent, client = node
    marker = tmp_path / "ran"
    body = json.dumps(shell_job("evil", f"touch {marker}")).encode()
    as_form = {"Content-Type": "text/plain"}

    r = client.request(
        "POST", "/v1/jobs?runoncreate=true", raw=body, headers={**as_form, "Origin": EVIL}
    )
    assert r.status == 403 and "evil.example" in r.text and "--cors-allowed-origins" in r.text

    rebound = head(
        "POST", "/v1/jobs?runoncreate=true", agent.http_port,
        f"Host: evil.example:{agent.http_port}", f"Origin: http://evil.example:{agent.http_port}",
        "Content-Type: text/plain", f"Content-Length: {len(body)}",
    )  # fmt: skip
    r = exchange(agent.http_port, rebound + body)
    assert r.status == 403 and "evil.example" in r.text and "--http-allowed-hosts" in r.text

    r = client.request("POST", "/v1/jobs?runoncreate=true", raw=body, headers=as_form)
    assert r.status == 415 and "application/json" in r.text

    r = client.request("POST", "/v1/crontab/apply", raw=b"* * * * * root true\n", headers=as_form)
    assert r.status == 415 and "text/x-crontab" in r.text

    assert client.get("/v1/jobs/evil").status == 404
    assert not marker.exists()


def test_cross_site_leave_is_refused(node):
    agent, client = node
    r = client.request("POST", "/v1/leave", headers={"Origin": EVIL})
    assert r.status == 403 and "evil.example" in r.text
    for path in ("/v1/pause", "/v1/jobs/any/toggle"):
        assert client.request("POST", path, headers={"Origin": "null"}).status == 403
    assert client.request("DELETE", "/v1/jobs/any", headers={"Origin": EVIL}).status == 403
    assert not agent.leave_requested.is_set()
    assert client.get("/v1/pause").json() == {"paused": False}
    assert client.get("/health").status == 200


def test_dns_rebinding_host_cannot_read_the_api(node):
    agent, client = node
    assert client.post("/v1/jobs", shell_job("secret-job", "echo s3cret")).status == 201
    port = agent.http_port
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}"):
        r = exchange(port, head("GET", "/v1/jobs", port, f"Host: {host}"))
        assert r.status == 403 and "s3cret" not in r.text, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "10.1.2.3"):
        assert exchange(port, head("GET", "/v1/jobs", port, f"Host: {host}")).status == 200, host


def test_allowed_hosts_and_origins_are_configurable(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dkron.http")
    agent, client = start_agent(
        tmp_path,
        http_allowed_hosts=["dkron.internal"],
        cors_allowed_origins=["https://ops.example"],
    )
    try:
        port = agent.http_port
        r = exchange(port, head("GET", "/v1/jobs", port, f"Host: dkron.internal:{port}"))
        assert r.status == 200
        r = client.post(
            "/v1/jobs", shell_job("from-ops", "true"), headers={"Origin": "https://ops.example"}
        )
        assert r.status == 201
        assert r.headers["Access-Control-Allow-Origin"] == "https://ops.example"
        assert r.headers["Vary"] == "Origin"
        r = client.request("OPTIONS", "/v1/jobs", headers={"Origin": "https://ops.example"})
        assert r.status == 204 and "POST" in r.headers["Access-Control-Allow-Methods"]
        r = client.request("OPTIONS", "/v1/jobs", headers={"Origin": EVIL})
        assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        logged = [r.getMessage() for r in caplog.records if r.name == "dkron.http"]
        assert any("refused OPTIONS /v1/jobs" in m and "evil.example" in m for m in logged)
    finally:
        agent.stop()


def test_foreign_origin_is_not_echoed(node):
    _, client = node
    r = client.get("/v1/jobs", headers={"Origin": EVIL})
    assert r.status == 200
    assert "Access-Control-Allow-Origin" not in r.headers


def test_same_origin_pages_and_bodyless_calls_still_work(node):
    """Compatibility: the web UI (same origin) and Dkron's bodyless run/toggle calls."""
    agent, client = node
    same = {"Origin": f"http://127.0.0.1:{agent.http_port}"}
    assert client.post("/v1/jobs", shell_job("plain", "true"), headers=same).status == 201
    # urllib sends an empty POST as application/x-www-form-urlencoded, as curl -X POST does.
    assert client.request("POST", "/v1/jobs/plain", raw=b"", headers=same).status == 202
    assert client.request("POST", "/v1/jobs/plain/toggle", raw=b"").status == 200
    assert client.request("POST", "/v1/jobs/plain/run").status == 202
    r = client.request(
        "POST",
        "/v1/jobs",
        raw=b'{"name": "x"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status == 400 and "schedule" in r.text  # reached validation: the type was fine
