"""What clients written for other Dkron versions send: unknown fields, Dkron 1.x's top-level
command/shell, paths with a trailing slash; and job warnings for tags that select no node.

Real HTTP against an agent started in this process."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse

import pytest
from agent_support import shell_job, start_agent
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg.job_compat import KNOWN_FIELDS, LEGACY_SHELL_FIELDS, accept_client_job
from dkron_pkg.jobs import JobError, normalize_job
from dkron_pkg.node_tags import job_tag_warnings
from dkron_pkg.store_commands import CommandError, check_command


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    agent, client = start_agent(tmp_path_factory.mktemp("compat"))
    yield agent, client
    agent.stop()


@pytest.fixture
def node(served):
    return served[1]


def raw_request(agent, method: str, path: str, body: bytes = b"") -> http.client.HTTPResponse:
    """One request without following redirects."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.http_port, timeout=10)
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def wait_finished(node, name: str) -> dict:
    def check():
        runs = node.get(f"/v1/jobs/{name}/executions").json()
        done = [e for e in runs if not e["finished_at"].startswith("0001")]
        return done[0] if done else None

    return node.wait_for(check)


# ----- unknown fields ---------------------------------------------------------------------


def test_unknown_fields_are_accepted_ignored_and_named(node, caplog) -> None:
    job = {**shell_job("extra-fields", "true"), "colour": "blue", "priority": 3}
    with caplog.at_level(logging.INFO, logger="dkron.http"):
        r = node.post("/v1/jobs", job)
        assert r.status == 201, r.text
        assert r.headers["X-Dkron-Ignored-Fields"] == "colour, priority"
        got = node.get("/v1/jobs/extra-fields").json()
        assert "colour" not in got and "priority" not in got
        # The log names them once per job, not on every re-send...
        assert node.post("/v1/jobs", job).status == 201
        named = [r for r in caplog.records if "extra-fields" in r.getMessage()]
        assert len(named) == 1
        assert '"colour"' in named[0].getMessage() and '"priority"' in named[0].getMessage()
        # ... and again when they change.
        assert node.post("/v1/jobs", {**job, "size": "xl"}).status == 201
        named = [r for r in caplog.records if "extra-fields" in r.getMessage()]
        assert len(named) == 2 and '"size"' in named[1].getMessage()
    assert "X-Dkron-Ignored-Fields" not in node.post("/v1/jobs", shell_job("plain", "true")).headers
    # The API drops them before committing: the store's own check stays strict.
    with pytest.raises(CommandError, match='unknown field "colour"'):
        check_command({"op": "set_job", "job": job, "now_ns": 1})


def test_ignored_field_names_are_listed_safely_in_the_header(node) -> None:
    odd = {"a,b": 1, "line\r\nX-Evil: 1": 2, "zoné": 3}
    r = node.post("/v1/jobs", {**shell_job("odd-fields", "true"), **odd})
    assert r.status == 201, r.text
    listed = r.headers["X-Dkron-Ignored-Fields"].split(", ")
    assert [urllib.parse.unquote(n) for n in listed] == sorted(odd)
    assert "X-Evil" not in r.headers


def test_a_typo_is_named_when_the_job_is_refused(node) -> None:
    r = node.post("/v1/jobs", {"name": "typo", "schedual": "@daily", "executor": "shell"})
    assert r.status == 400
    assert 'ignored unknown fields: "schedual" (did you mean "schedule"?)' in r.text


def test_restore_ignores_unknown_fields(node) -> None:
    dump = [{**shell_job("restored-extra", "true"), "legacy": True}]
    body = (
        b"--XX\r\nContent-Disposition: form-data; name=file; filename=jobs.json\r\n\r\n"
        + json.dumps(dump).encode()
        + b"\r\n--XX--\r\n"
    )
    r = node.request(
        "POST",
        "/v1/restore",
        raw=body,
        headers={"Content-Type": "multipart/form-data; boundary=XX"},
    )
    assert r.status == 200, r.text
    assert r.headers["X-Dkron-Ignored-Fields"] == "legacy"
    assert node.get("/v1/jobs/restored-extra").status == 200


# ----- Dkron 1.x's command and shell ---------------------------------------------------------


def test_old_style_command_runs_through_the_shell_executor(node) -> None:
    r = node.post("/v1/jobs", {"name": "old-exec", "schedule": "@manually", "command": "echo hi"})
    assert r.status == 201, r.text
    assert "X-Dkron-Ignored-Fields" not in r.headers
    job = r.json()
    assert job["executor"] == "shell"
    assert job["executor_config"] == {"command": "echo hi", "shell": "false"}
    assert node.post("/v1/jobs/old-exec/run").status == 202
    run = wait_finished(node, "old-exec")
    assert run["success"] is True and run["output"] == "hi\n"


def test_old_style_shell_and_environment(node) -> None:
    job = {
        "name": "old-shell",
        "schedule": "@manually",
        "command": 'echo "$GREETING, $WHO" | tr a-z A-Z',
        "shell": True,
        "environment_variables": ["GREETING=hello", "WHO=a, b"],
    }
    r = node.post("/v1/jobs", job)
    assert r.status == 201, r.text
    config = r.json()["executor_config"]
    assert config["shell"] == "true"
    assert node.post("/v1/jobs/old-shell/run").status == 202
    assert wait_finished(node, "old-shell")["output"] == "HELLO, A, B\n"


def test_old_style_fields_beside_an_executor_are_ignored(node) -> None:
    job = {**shell_job("new-and-old", "true"), "command": "rm -rf /", "shell": True}
    r = node.post("/v1/jobs", job)
    assert r.status == 201
    assert r.headers["X-Dkron-Ignored-Fields"] == "command, shell"
    assert r.json()["executor_config"] == {"command": "true", "shell": "true"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"command": 5}, "command"),
        ({"command": "x", "shell": "maybe"}, "shell"),
        ({"command": "x", "environment_variables": "A=1"}, "environment_variables"),
    ],
)
def test_old_style_fields_of_the_wrong_type_are_refused(node, extra, field) -> None:
    r = node.post("/v1/jobs", {"name": "old-bad", "schedule": "@manually", **extra})
    assert r.status == 400
    assert r.headers["X-Error-Field"] == field
    assert node.get("/v1/jobs/old-bad").status == 404


# ----- trailing slash ---------------------------------------------------------------------


def test_a_trailing_slash_redirects_like_dkrons_router(served) -> None:
    agent, node = served
    assert node.post("/v1/jobs", shell_job("slashed", "true")).status == 201
    r = raw_request(agent, "GET", "/v1/jobs/slashed/executions/?_sort=id&_order=ASC")
    assert r.status == 301
    assert r.getheader("Location") == "/v1/jobs/slashed/executions?_sort=id&_order=ASC"
    r = raw_request(agent, "POST", "/v1/jobs/", b"{}")
    assert (r.status, r.getheader("Location")) == (307, "/v1/jobs")
    r = raw_request(agent, "POST", "/v1/jobs/slashed/run/")
    assert (r.status, r.getheader("Location")) == (307, "/v1/jobs/slashed/run")
    assert raw_request(agent, "GET", "/v1/members/").getheader("Location") == "/v1/members"
    assert raw_request(agent, "GET", "/health/").getheader("Location") == "/health"
    # A client that follows redirects gets the answer.
    assert node.get("/v1/jobs/slashed/executions/").status == 200
    # Paths routed with their slash, and unknown paths, are not redirected.
    assert raw_request(agent, "GET", "/v1/").status == 200
    assert raw_request(agent, "GET", "/v1/nothing/").status == 404
    assert raw_request(agent, "GET", "/v1/jobs/slashed/run/").status == 404  # POST only


# ----- warnings ---------------------------------------------------------------------------


def test_a_job_whose_tags_select_no_node_says_so(node) -> None:
    r = node.post("/v1/jobs", shell_job("for-workers", "true", tags={"role": "worker:1"}))
    assert r.status == 201
    (warning,) = r.json()["warnings"]
    assert "no known node has role=worker" in warning and "set by the agent" in warning
    got = node.get("/v1/jobs/for-workers").json()
    assert got["warnings"] == [warning]
    # Computed on each read, never stored: the list and a re-sent job carry no warnings.
    listed = {j["name"]: j for j in node.get("/v1/jobs").json()}
    assert "warnings" not in listed["for-workers"]
    r = node.post("/v1/jobs", got)
    assert r.status == 201 and "X-Dkron-Ignored-Fields" not in r.headers


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        ({"zone": "mars"}, "no known node has zone=mars"),
        ({"role": "dkron:0"}, "count must be a whole number of at least 1"),
        ({"role": "dkron:x"}, "count must be a whole number of at least 1"),
    ],
)
def test_other_tags_that_select_no_node(node, tags, fragment) -> None:
    r = node.post("/v1/jobs", shell_job("no-node", "true", tags=tags))
    assert r.status == 201
    assert any(fragment in w for w in node.get("/v1/jobs/no-node").json()["warnings"])


@pytest.mark.parametrize("tags", [None, {"role": "dkron:1"}, {"server": "true", "node": "node1"}])
def test_tags_some_node_has_give_no_warnings(node, tags) -> None:
    assert node.post("/v1/jobs", shell_job("some-node", "true", tags=tags)).status == 201
    assert "warnings" not in node.get("/v1/jobs/some-node").json()


# ----- total functions --------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(sorted(KNOWN_FIELDS) + list(LEGACY_SHELL_FIELDS)) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=8) | JSON_VALUES)
def test_any_payload_is_accepted_or_refused_with_a_job_error(payload) -> None:
    try:
        sent = accept_client_job(payload)
        job = normalize_job(sent.payload)
    except JobError as e:
        assert str(e)
        return
    assert set(job) <= KNOWN_FIELDS
    assert sent.ignored == sorted(set(payload) - KNOWN_FIELDS - set(sent.mapped))


@settings(max_examples=300, deadline=None)
@given(
    JSON_VALUES,
    st.lists(
        st.fixed_dictionaries({"Tags": st.dictionaries(st.text(max_size=6), st.text(max_size=6))})
    ),
)
def test_job_tag_warnings_are_total(tags, members) -> None:
    warnings = job_tag_warnings(tags, members, "global")
    assert all(isinstance(w, str) and w for w in warnings)
