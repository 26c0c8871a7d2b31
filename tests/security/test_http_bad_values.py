"""Finding 7 (HTTP part): bad values broke answers or got 500s.

A job named outside Latin-1 was created and then its answer broke on `Location`; a node name
outside Latin-1 broke every answer through `X-Whom`; a field name outside Latin-1 killed the
handler thread on `X-Error-Field`. NaN, deep nesting and huge integers got 500, TRACE got 501,
and names of 100,000 characters and retries of 1e308 were accepted. Each test here failed on
the code before issue 16 and passes now.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from agent_support import shell_job, start_agent

from .http_raw import exchange, head

NAME = "ǆob-ʒ"  # lowercase letters outside Latin-1: a valid Dkron job name


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    agent, client = start_agent(tmp_path_factory.mktemp("values"), node_name="узел-1")
    yield agent, client
    agent.stop()


def test_names_outside_latin1_get_encoded_headers(node):
    _, client = node
    r = client.post("/v1/jobs", shell_job(NAME, "true"))
    assert r.status == 201
    assert r.headers["Location"] == "/v1/jobs/" + quote(NAME, safe="")
    assert r.headers["X-Whom"] == quote("узел-1")
    path = "/v1/jobs/" + quote(NAME, safe="")
    r = client.post(path + "/toggle")
    assert r.status == 200 and r.headers["Location"] == path
    r = client.post(path)
    assert r.status == 202 and r.headers["Location"] == path
    assert client.get(path).json()["name"] == NAME


def test_error_field_outside_latin1_is_encoded(node):
    _, client = node
    r = client.post("/v1/jobs", shell_job("tagged", "true", tags={"ключ": 1}))
    assert r.status == 400 and "ключ" in r.text
    assert r.headers["X-Error-Field"] == "tags." + quote("ключ")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"name": "n", "schedule": "@daily", "retries": NaN}', "NaN"),
        (b'{"name": "n", "schedule": "@daily", "retries": -Infinity}', "Infinity"),
        (b'{"name": "n", "retries": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"name": "n", "retries": 1e999}', "out of range"),
        (b"[" * 50_000 + b"]" * 50_000, "nest 50000 deep"),
        (b'{"tags": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "at most 32"),
    ],
)
def test_json_beyond_bounds_is_400(node, body, fragment):
    _, client = node
    r = client.request("POST", "/v1/jobs", raw=body, headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.text.startswith("Unable to parse payload") and fragment in r.text


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (shell_job("a" * 100_000, "true"), "name"),
        (shell_job("too-many", "true", retries=1e308), "retries"),
        (shell_job("too-many", "true", retries=101), "retries"),
        (shell_job("long-schedule", "true", schedule="@every 1h" + " " * 2000), "schedule"),
        (shell_job("many-tags", "true", tags={f"k{i}": "v" for i in range(300)}), "tags"),
    ],
)
def test_names_and_numbers_have_upper_bounds(node, job, field):
    _, client = node
    r = client.post("/v1/jobs", job)
    assert r.status == 400 and "at most" in r.text, r.text
    assert r.headers["X-Error-Field"] == field
    assert job["name"] not in [j["name"] for j in client.get("/v1/jobs").json()]


def test_restore_json_is_bounded_too(node):
    _, client = node
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="j.json"\r\n'
        "Content-Type: application/json\r\n\r\n"
        '[{"name": "r", "schedule": "@daily", "retries": NaN}]\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = client.request("POST", "/v1/restore", raw=body, headers=headers)
    assert r.status == 400 and "NaN" in r.text


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_unknown_methods_get_405_with_allow(node, method):
    agent, _ = node
    reply = exchange(agent.http_port, head(method, "/v1/jobs", agent.http_port))
    assert reply.status == 405 and method in reply.text
    assert reply.headers["allow"] == "GET, HEAD, POST, PATCH, OPTIONS"
    reply = exchange(agent.http_port, head(method, "/nowhere", agent.http_port))
    assert reply.status == 405 and "DELETE" in reply.headers["allow"]


def test_bounds_leave_ordinary_jobs_alone(node):
    """Compatibility: a job at every bound is still accepted."""
    _, client = node
    job = shell_job("b" * 256, "true", retries=100, tags={f"k{i}": "v" for i in range(256)})
    job["displayname"] = "d" * 1024
    r = client.post("/v1/jobs", job)
    assert r.status == 201, r.text
    assert json.loads(client.get("/v1/jobs/" + "b" * 256).body)["retries"] == 100
