"""The REST API over real HTTP against an agent started in this process: Dkron's paths,
fields, status codes and list semantics, plus what we fix (202 run-now, forbid, stop)."""

from __future__ import annotations

import json
import time

import pytest
from agent_support import shell_job, start_agent


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    agent, client = start_agent(
        tmp_path_factory.mktemp("api"), cors_allowed_origins=["http://ui.example"]
    )
    yield client
    agent.stop()


def finished(client, name, count=1):
    """Wait until the job has `count` finished executions and return them (newest first)."""

    def check():
        r = client.get(f"/v1/jobs/{name}/executions")
        done = [e for e in r.json() if not e["finished_at"].startswith("0001")]
        return done if len(done) >= count else None

    return client.wait_for(check, timeout=40)  # runs on a loaded CI machine


# ----- node endpoints --------------------------------------------------------------------


def test_health_status_and_common_headers(node):
    r = node.get("/health")
    assert r.status == 200
    assert r.json() == {"status": "healthy", "security": "key", "problems": []}
    assert r.headers["X-Whom"] == "node1"
    assert "Access-Control-Allow-Origin" not in r.headers  # only for listed origins
    r = node.get("/v1/")
    body = r.json()
    assert body["agent"]["name"] == "node1" and body["tags"]["server"] == "true"
    assert body["tags"]["role"] == "dkron" and body["tags"]["region"] == "global"


def test_pretty_output_is_indented(node):
    assert b"\n" not in node.get("/v1/members").body
    assert b"\n    " in node.get("/v1/members?pretty").body


def test_cors_preflight(node):
    r = node.request(
        "OPTIONS",
        "/v1/jobs",
        headers={"Origin": "http://ui.example", "Access-Control-Request-Headers": "content-type"},
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://ui.example"
    assert "DELETE" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Expose-Headers"] == "*"


def test_members_leader_isleader(node):
    r = node.get("/v1/members")
    members = r.json()
    assert r.headers["X-Total-Count"] == "1"
    assert members[0]["Name"] == "node1" and members[0]["statusText"] == "alive"
    assert members[0]["Status"] == 1 and "rpc_addr" in members[0]["Tags"]
    leader = node.get("/v1/leader")
    assert leader.status == 200 and leader.json()["Name"] == "node1"
    assert "statusText" not in leader.json()
    r = node.get("/v1/isleader")
    assert r.status == 200 and r.json() == "I am a leader"


def test_unknown_endpoint_and_method(node):
    assert node.get("/v1/nothing").status == 404
    r = node.request("PATCH", "/v1/members")
    assert r.status == 405 and "not allowed" in r.text


# ----- jobs ------------------------------------------------------------------------------


def test_create_returns_201_with_location_and_defaults(node):
    r = node.post("/v1/jobs", shell_job("create-me", "true", schedule="@every 1h"))
    # What GET returns can be sent back unchanged (server fields are accepted and ignored).
    assert node.post("/v1/jobs", r.json()).status == 201
    assert r.status == 201
    assert r.headers["Location"] == "/v1/jobs/create-me"
    job = r.json()
    assert job["id"] == "create-me" and job["concurrency"] == "allow"
    assert job["status"] == "" and job["success_count"] == 0
    assert job["next"] > "2000"  # a real time in the future, not the zero time
    got = node.get("/v1/jobs/create-me").json()
    assert got["executor_config"] == {"command": "true", "shell": "true"}


def test_read_your_write_no_404_after_201(node):
    for i in range(20):
        name = f"ryw-{i}"
        assert node.post("/v1/jobs", shell_job(name, "true")).status == 201
        assert node.get(f"/v1/jobs/{name}").status == 200


@pytest.mark.parametrize(
    ("payload", "fragment", "field"),
    [
        ({"name": "Upper", "schedule": "@daily"}, "illegal characters", "name"),
        ({"name": "", "schedule": "@daily"}, "name cannot be empty", "name"),
        ({"name": "bad-sched", "schedule": "61 * * * * *"}, "can't parse job schedule", "schedule"),
        ({"name": "five", "schedule": "* * * * *"}, "can't parse job schedule", "schedule"),
        ({"name": "tz", "schedule": "@daily", "timezone": "Mars/Base"}, "Mars/Base", "timezone"),
        ({"name": "conc", "schedule": "@daily", "concurrency": "sometimes"}, "concurrency", ""),
        ({"name": "exe", "schedule": "@daily", "executor": "teleport"}, "unknown executor", ""),
        (
            {
                "name": "cfg",
                "schedule": "@daily",
                "executor": "shell",
                "executor_config": {"command": "x", "shell": True},
            },
            "must be a string",
            "executor_config.shell",
        ),
        (
            {
                "name": "tmo",
                "schedule": "@daily",
                "executor": "shell",
                "executor_config": {"command": "x", "timeout": "5 parsecs"},
            },
            "timeout",
            "executor_config.timeout",
        ),
        ({"name": "retr", "schedule": "@daily", "retries": "three"}, "retries", "retries"),
        ({"name": "self", "schedule": "@daily", "parent_job": "self"}, "own parent", ""),
        ({"name": "mr", "schedule": "@daily", "missed_runs": "maybe"}, "missed_runs", ""),
        (["not", "an", "object"], "JSON object", ""),
        # An unknown field is ignored (as Dkron does); the 400 for the empty schedule names it.
        ({"name": "typo", "schedual": "@daily"}, 'did you mean "schedule"', "schedule"),
    ],
)
def test_bad_jobs_get_400_with_a_clear_message_and_change_nothing(node, payload, fragment, field):
    before = node.get("/v1/jobs").headers["X-Total-Count"]
    r = node.post("/v1/jobs", payload)
    assert r.status == 400, r.text
    assert fragment in r.text
    if field:
        assert r.headers["X-Error-Field"] == field
    assert r.headers["Content-Type"].startswith("text/plain")
    assert node.get("/v1/jobs").headers["X-Total-Count"] == before


def test_malformed_json_and_empty_body(node):
    r = node.request(
        "POST", "/v1/jobs", raw=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    assert r.status == 400 and r.text.startswith("Unable to parse payload")
    assert "line 1" in r.text
    assert node.request("POST", "/v1/jobs", raw=b"").status == 400


def test_missing_parent_is_404(node):
    r = node.post("/v1/jobs", shell_job("orphan", "true", parent_job="no-such-parent"))
    assert r.status == 404 and "no-such-parent" in r.text


def test_put_and_patch_upsert_by_body_name(node):
    node.post("/v1/jobs", shell_job("upd", "true", displayname="one"))
    r = node.put("/v1/jobs/ignored-path", shell_job("upd", "true", displayname="two"))
    assert r.status == 201 and node.get("/v1/jobs/upd").json()["displayname"] == "two"
    r = node.request("PATCH", "/v1/jobs", shell_job("upd", "true", displayname="three"))
    assert r.status == 201 and node.get("/v1/jobs/upd").json()["displayname"] == "three"


def test_toggle_flips_disabled(node):
    node.post("/v1/jobs", shell_job("tog", "true"))
    r = node.post("/v1/jobs/tog/toggle")
    assert r.status == 200 and r.json()["disabled"] is True
    assert node.post("/v1/jobs/tog/toggle").json()["disabled"] is False
    assert node.post("/v1/jobs/nope/toggle").status == 404


def test_delete_job_and_children_rule(node):
    node.post("/v1/jobs", shell_job("dparent", "true"))
    node.post("/v1/jobs", shell_job("dchild", "true", parent_job="dparent"))
    assert node.get("/v1/jobs/dparent").json()["dependent_jobs"] == ["dchild"]
    r = node.delete("/v1/jobs/dparent")
    assert r.status == 404 and "dependent jobs" in r.text
    r = node.delete("/v1/jobs/dchild")
    assert r.status == 200 and r.json()["name"] == "dchild"
    assert node.get("/v1/jobs/dchild").status == 404
    assert node.delete("/v1/jobs/dparent").status == 200
    assert node.delete("/v1/jobs/dparent").status == 404


def test_list_filters_sort_and_pagination(node):
    for i, (status_cmd, meta) in enumerate(
        [("true", "blue"), ("false", "blue"), ("true", "red"), ("true", "blue")]
    ):
        job = shell_job(f"lst-{i}", status_cmd, displayname=f"List {3 - i}")
        job["metadata"] = {"team": meta}
        job["tags"] = {"dc": "dc1"} if i % 2 else None
        node.post("/v1/jobs", job)
    node.post("/v1/jobs/lst-0/run")
    node.post("/v1/jobs/lst-1/run")
    finished(node, "lst-0")
    finished(node, "lst-1")
    r = node.get("/v1/jobs?q=lst-&_sort=name&_order=ASC")
    assert [j["name"] for j in r.json()] == ["lst-0", "lst-1", "lst-2", "lst-3"]
    assert r.headers["X-Total-Count"] == "4"
    r = node.get("/v1/jobs?q=lst-&_sort=displayname&_order=DESC")
    assert [j["name"] for j in r.json()] == ["lst-0", "lst-1", "lst-2", "lst-3"]
    r = node.get("/v1/jobs?q=lst-&_sort=name&_start=1&_end=3")
    assert [j["name"] for j in r.json()] == ["lst-1", "lst-2"]
    assert r.headers["X-Total-Count"] == "4"
    r = node.get("/v1/jobs?q=lst-&metadata[team]=blue")
    assert sorted(j["name"] for j in r.json()) == ["lst-0", "lst-1", "lst-3"]
    r = node.get("/v1/jobs?q=lst-&status=failed")
    assert [j["name"] for j in r.json()] == ["lst-1"]
    r = node.get("/v1/jobs?q=lst-&status=untriggered")
    assert sorted(j["name"] for j in r.json()) == ["lst-2", "lst-3"]
    r = node.get("/v1/jobs?q=lst-&tags[dc]=dc1")
    assert sorted(j["name"] for j in r.json()) == ["lst-1", "lst-3"]
    node.post("/v1/jobs/lst-2/toggle")
    r = node.get("/v1/jobs?q=lst-&disabled=true")
    assert [j["name"] for j in r.json()] == ["lst-2"]
    r = node.get("/v1/jobs?q=List%200")  # displayname search, case-sensitive
    assert [j["name"] for j in r.json()] == ["lst-3"]
    assert node.get("/v1/jobs?q=list%200").json() == []
    r = node.get("/v1/jobs?_sort=color")
    assert r.status == 400 and "cannot sort" in r.text


# ----- runs and executions ----------------------------------------------------------------


def test_run_now_answers_202_at_once_and_records_output(node):
    node.post("/v1/jobs", shell_job("slow", "sleep 1; echo done-$ENV_JOB_NAME"))
    t0 = time.monotonic()
    r = node.post("/v1/jobs/slow/run")
    assert r.status == 202 and r.json()["name"] == "slow"
    assert time.monotonic() - t0 < 0.9  # does not wait for the 1 s job
    ex = finished(node, "slow")[0]
    assert ex["success"] is True and ex["output"].strip() == "done-slow"
    assert ex["attempt"] == 1 and ex["node_name"] == "node1"
    assert ex["id"].endswith("-node1") and ex["id"].split("-")[0].isdigit()
    job = node.get("/v1/jobs/slow").json()
    assert job["status"] == "success" and job["success_count"] == 1
    assert job["last_success"] is not None
    one = node.get(f"/v1/jobs/slow/executions/{ex['id']}")
    assert one.status == 200 and one.json()["output"] == ex["output"]
    assert node.get("/v1/jobs/slow/executions/123-nobody").status == 404
    assert node.post("/v1/jobs/missing/run").status == 404
    node.post("/v1/jobs", shell_job("nowhere", "true", tags={"zone": "mars"}))
    r = node.post("/v1/jobs/nowhere/run")
    assert r.status == 404 and "no target nodes" in r.text
    # The Dkron alias without /run does the same.
    assert node.post("/v1/jobs/slow").status == 202


def test_executions_order_limit_and_timezone(node):
    job = shell_job("exs", "printf 0123456789", timezone="Asia/Tokyo")
    node.post("/v1/jobs", job)
    for _ in range(3):
        node.post("/v1/jobs/exs/run")
        time.sleep(0.05)
    finished(node, "exs", 3)
    r = node.get("/v1/jobs/exs/executions?output_size_limit=4")
    exs = r.json()
    assert r.headers["X-Total-Count"] == "3"
    assert [e["started_at"] for e in exs] == sorted((e["started_at"] for e in exs), reverse=True)
    assert all(e["output"] == "6789" and e["output_truncated"] for e in exs)
    assert all(e["started_at"].endswith("+09:00") for e in exs)
    asc = node.get("/v1/jobs/exs/executions?_order=ASC").json()
    assert [e["id"] for e in asc] == [e["id"] for e in reversed(exs)]
    assert node.get("/v1/jobs/nope/executions").status == 404


def test_delete_executions_resets_counters(node):
    node.post("/v1/jobs", shell_job("clear", "true"))
    node.post("/v1/jobs/clear/run")
    finished(node, "clear")
    r = node.delete("/v1/jobs/clear/executions")
    assert r.status == 200 and r.json()["success_count"] == 0
    assert node.get("/v1/jobs/clear/executions").json() == []


def test_failing_job_and_retries_that_recover_count_as_success(node, tmp_path):
    marker = tmp_path / "second-attempt"
    cmd = f"if [ -e {marker} ]; then echo ok; else touch {marker}; echo bad; exit 3; fi"
    node.post("/v1/jobs", shell_job("flaky", cmd, retries=2, retry_delay="100ms"))
    node.post("/v1/jobs/flaky/run")
    exs = finished(node, "flaky", 2)
    assert [e["attempt"] for e in exs] == [2, 1]
    assert exs[1]["success"] is False and exs[1]["output"].startswith("exit status 3")
    assert exs[0]["success"] is True and exs[0]["group"] == exs[1]["group"]
    job = node.get("/v1/jobs/flaky").json()
    assert job["status"] == "success" and job["error_count"] == 0


def test_forbid_refuses_a_manual_run_while_running(node):
    node.post("/v1/jobs", shell_job("solo", "sleep 2", concurrency="forbid"))
    assert node.post("/v1/jobs/solo/run").status == 202
    r = node.post("/v1/jobs/solo/run")
    assert r.status == 409 and "forbid" in r.text
    node.wait_for(lambda: node.get("/v1/jobs/solo").json()["running"])
    finished(node, "solo")
    assert node.post("/v1/jobs/solo/run").status == 202


def test_busy_shows_live_output_and_stop_kills_the_run(node):
    node.post("/v1/jobs", shell_job("longrun", "echo started; sleep 30"))
    node.post("/v1/jobs/longrun/run")

    def running():
        busy = [e for e in node.get("/v1/busy").json() if e["job_name"] == "longrun"]
        return busy if busy and "started" in busy[0]["output"] else None

    ex = node.wait_for(running)[0]
    assert ex["finished_at"] == "0001-01-01T00:00:00Z"
    live = node.get(f"/v1/jobs/longrun/executions/{ex['id']}").json()
    assert "started" in live["output"]
    assert node.get("/v1/jobs?status=running&q=longrun").json()[0]["running"] is True
    t0 = time.monotonic()
    r = node.delete(f"/v1/jobs/longrun/executions/{ex['id']}")
    assert r.status == 202
    done = finished(node, "longrun")[0]
    assert time.monotonic() - t0 < 10
    assert done["success"] is False and "stopped" in done["output"]
    assert not [e for e in node.get("/v1/busy").json() if e["job_name"] == "longrun"]
    # A finished execution is deleted by the same call.
    assert node.delete(f"/v1/jobs/longrun/executions/{done['id']}").status == 200
    assert node.get("/v1/jobs/longrun/executions").json() == []


def test_dependent_job_runs_once_after_parent_success(node, tmp_path):
    out = tmp_path / "child.log"
    node.post("/v1/jobs", shell_job("chain-parent", "true"))
    node.post("/v1/jobs", shell_job("chain-child", f"echo ran >> {out}", parent_job="chain-parent"))
    node.post("/v1/jobs/chain-parent/run")
    finished(node, "chain-child")
    time.sleep(0.3)
    assert out.read_text().count("ran") == 1


def test_ephemeral_job_is_deleted_after_success(node):
    node.post("/v1/jobs", shell_job("eph", "true", ephemeral=True))
    node.post("/v1/jobs/eph/run")
    node.wait_for(lambda: node.get("/v1/jobs/eph").status == 404)


def test_scheduled_job_fires_by_itself(node):
    node.post("/v1/jobs", shell_job("tick", "echo tick", schedule="@every 1s"))
    exs = finished(node, "tick", 2)
    assert all(e["success"] for e in exs)
    # Each run names the scheduled time it served; consecutive ones are 1 s apart.
    times = sorted(e["scheduled_at"] for e in exs)
    assert len(set(times)) == len(times)
    node.post("/v1/jobs/tick/run")
    manual = [e for e in finished(node, "tick", len(exs) + 1) if e["scheduled_at"] is None]
    assert manual  # a manual run has no scheduled time
    node.delete("/v1/jobs/tick")


def test_schedule_preview(node):
    r = node.get("/v1/schedule/preview?schedule=0%200%209%20*%20*%20*&timezone=Europe/Paris")
    body = r.json()
    assert r.status == 200 and len(body["next"]) == 5
    assert all(t.endswith(("T07:00:00Z", "T08:00:00Z")) for t in body["next"])
    bad = node.get("/v1/schedule/preview?schedule=nonsense")
    assert bad.status == 400 and bad.headers["X-Error-Field"] == "schedule"


# ----- pause, restore --------------------------------------------------------------------


def test_pause_blocks_job_submissions_only(node):
    assert node.get("/v1/pause").json() == {"paused": False}
    assert node.post("/v1/pause").json() == {"paused": True}
    r = node.post("/v1/jobs", shell_job("paused-job", "true"))
    assert r.status == 503 and "paused" in r.text
    assert node.post("/v1/unpause").json() == {"paused": False}
    assert node.post("/v1/jobs", shell_job("paused-job", "true")).status == 201


def multipart(field: str, content: bytes) -> tuple[bytes, dict]:
    boundary = "----dkronboundary7"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="jobs.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_restore_creates_parents_first_and_keeps_counters(node):
    jobs = [
        {**shell_job("rs-child", "true", parent_job="rs-parent")},
        {**shell_job("rs-parent", "true"), "success_count": 7},
    ]
    body, headers = multipart("file", json.dumps(jobs).encode())
    r = node.request("POST", "/v1/restore", raw=body, headers=headers)
    assert r.status == 200
    assert json.loads(r.json()) == ["success create rs-parent", "success create rs-child"]
    assert node.get("/v1/jobs/rs-parent").json()["success_count"] == 7
    assert node.get("/v1/jobs/rs-parent").json()["dependent_jobs"] == ["rs-child"]


def test_restore_rejects_bad_input_as_a_whole(node):
    jobs = [shell_job("rs-good", "true"), {"name": "BAD NAME", "schedule": "@daily"}]
    body, headers = multipart("file", json.dumps(jobs).encode())
    r = node.request("POST", "/v1/restore", raw=body, headers=headers)
    assert r.status == 400 and "BAD NAME" in r.text
    assert node.get("/v1/jobs/rs-good").status == 404
    body, headers = multipart("other", b"[]")
    assert node.request("POST", "/v1/restore", raw=body, headers=headers).status == 404
    body, headers = multipart("file", b"{not json")
    assert node.request("POST", "/v1/restore", raw=body, headers=headers).status == 400


# ----- safety ----------------------------------------------------------------------------


def test_token_is_required_when_set(tmp_path):
    agent, client = start_agent(tmp_path, api_token="s3cret")
    try:
        client.token = ""
        r = client.get("/v1/jobs")
        assert r.status == 401 and "token" in r.text
        assert client.get("/health").status == 200
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status == 401
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer s3cret"}).status == 200
        assert client.get("/v1/jobs", headers={"X-Dkron-Token": "s3cret"}).status == 200
    finally:
        agent.stop()


def test_oversized_body_is_refused(tmp_path):
    agent, client = start_agent(tmp_path, max_body_bytes=1000)
    try:
        big = shell_job("big", "echo " + "x" * 5000)
        r = client.post("/v1/jobs", big)
        assert r.status == 413 and "limit" in r.text
        assert client.get("/v1/jobs/big").status == 404
    finally:
        agent.stop()


# ----- crontab import --------------------------------------------------------------------

CRONTAB = "SHELL=/bin/sh\n*/5 * * * * root echo five\n0 3 * * 1-5 root echo weekdays\n"
AS_CRONTAB = {"Content-Type": "text/x-crontab"}


def test_crontab_preview_then_apply_then_reapply(node):
    before = node.get("/v1/jobs").headers["X-Total-Count"]
    r = node.request(
        "POST", "/v1/crontab/preview?file=web-test", raw=CRONTAB.encode(), headers=AS_CRONTAB
    )
    plan = r.json()
    assert r.status == 200 and plan["errors"] == []
    assert sorted(j["schedule"] for j in plan["create"]) == sorted(
        ["@crontab 0 3 * * 1-5", "@crontab */5 * * * *"]
    )
    assert all(j["schedule_words"] for j in plan["create"])
    assert node.get("/v1/jobs").headers["X-Total-Count"] == before  # preview changes nothing
    r = node.request(
        "POST", "/v1/crontab/apply?file=web-test", raw=CRONTAB.encode(), headers=AS_CRONTAB
    )
    assert r.status == 200 and r.json()["applied"] is True
    names = [j["name"] for j in plan["create"]]
    for name in names:
        job = node.get(f"/v1/jobs/{name}").json()
        assert job["executor"] == "shell" and job["next"] > "2000"
    again = node.request(
        "POST", "/v1/crontab/apply?file=web-test", raw=CRONTAB.encode(), headers=AS_CRONTAB
    ).json()
    assert again["create"] == [] and again["unchanged"] == 2
    # Removing a line from the file removes its job.
    shorter = "*/5 * * * * root echo five\n"
    gone = node.request(
        "POST", "/v1/crontab/apply?file=web-test", raw=shorter.encode(), headers=AS_CRONTAB
    ).json()
    assert len(gone["delete"]) == 1
    assert sum(node.get(f"/v1/jobs/{n}").status == 200 for n in names) == 1


def test_crontab_with_a_bad_line_is_rejected_whole(node):
    before = node.get("/v1/jobs").headers["X-Total-Count"]
    text = "*/5 * * * * root echo ok\n61 * * * * root echo bad\n"
    r = node.request(
        "POST", "/v1/crontab/apply?file=bad-test", raw=text.encode(), headers=AS_CRONTAB
    )
    assert r.status == 400
    assert any("bad minute" in e and ":2" in e for e in r.json()["errors"])
    assert node.get("/v1/jobs").headers["X-Total-Count"] == before


def test_shell_jobs_see_their_run_identity(node):
    node.post("/v1/jobs", shell_job("whoami", "echo $DKRON_NODE_NAME/$DKRON_SCHEDULED_AT/x"))
    node.post("/v1/jobs/whoami/run")
    ex = finished(node, "whoami")[0]
    assert ex["output"].strip() == "node1//x"  # a manual run has no scheduled time


def test_a_retry_knows_its_attempt_number(node):
    cmd = 'echo "attempt $DKRON_ATTEMPT"; [ "$DKRON_ATTEMPT" = 2 ]'
    node.post("/v1/jobs", shell_job("second-time-lucky", cmd, retries=1))
    node.post("/v1/jobs/second-time-lucky/run")
    runs = sorted(finished(node, "second-time-lucky", count=2), key=lambda e: e["attempt"])
    seen = [
        (e["attempt"], "attempt " + str(e["attempt"]) in e["output"], e["success"]) for e in runs
    ]
    assert seen == [
        (1, True, False),
        (2, True, True),
    ]


def test_metrics_endpoint_when_enabled(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    agent, client = start_agent(tmp_path, enable_prometheus=True)

    def created() -> float:
        # The registry is per process, shared with other agents a test run may start here.
        return sum(
            s.value
            for fam in text_string_to_metric_families(client.get("/metrics").text)
            for s in fam.samples
            if s.name == "dkron_api_requests_total" and s.labels.get("route") == "upsert_job"
        )

    try:
        before = created()
        client.post("/v1/jobs", shell_job("measured", "true"))
        client.post("/v1/jobs", shell_job("measured-bad", "false"))
        client.post("/v1/jobs/measured/run")
        client.post("/v1/jobs/measured-bad/run")
        client.wait_for(
            lambda: all(
                client.get(f"/v1/jobs/{n}").json()["status"] for n in ("measured", "measured-bad")
            )
        )
        r = client.get("/metrics")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text)
            for s in fam.samples
        }
        ok = [
            v
            for (n, lbl), v in samples.items()
            if "succeeded" in n and ("job_name", "measured") in lbl
        ]
        bad = [
            v
            for (n, lbl), v in samples.items()
            if "failed" in n and ("job_name", "measured-bad") in lbl
        ]
        assert ok == [1.0] and bad == [1.0]
        assert created() - before == 2  # counted by route template, not by raw path
    finally:
        agent.stop()


def test_metrics_endpoint_is_off_by_default(node):
    r = node.get("/metrics")
    assert r.status == 404 and "enable-prometheus" in r.text
