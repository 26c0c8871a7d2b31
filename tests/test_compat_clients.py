"""Dkron clients nobody here wrote, against a real node: pydkron 0.2.4 (from PyPI, a test
dependency) as its README uses it."""

from __future__ import annotations

import pytest
from agent_support import start_agent
from pydkron.client import DkronClient


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    agent, http = start_agent(tmp_path_factory.mktemp("pydkron"))
    yield DkronClient(hosts=[f"127.0.0.1:{agent.http_port}"]), http
    agent.stop()


def test_pydkron_readme_example(client) -> None:
    dkron, http = client
    # "Create a new job", exactly as pydkron's README writes it (an old-style job).
    data = {
        "name": "job2",
        "schedule": "@every 2m",
        "command": "run stuff",
        "owner": "Tait Clarridge",
        "tags": {
            "role": "dkron:1",
        },
    }
    job = dkron.create_job(data)  # raises unless the answer is 201
    assert [j.name for j in dkron.jobs()] == ["job2"]
    # "Get a job by name", "Update a job (change the schedule)": sends back what GET gave.
    job = dkron.get_job("job2")
    assert job["executor"] == "shell"
    assert job["executor_config"] == {"command": "run stuff", "shell": "false"}
    job.schedule = "@every 3m"
    job.save()
    assert dkron.get_job("job2").schedule == "@every 3m"
    # "Run a job", "List executions" (GET /v1/jobs/job2/executions/, with its slash).
    job.run()
    runs = http.wait_for(lambda: job.executions())
    assert runs[0]["job_name"] == "job2"
    assert dkron.toggle("job2")["disabled"] is True
    # "Delete a job"
    job.delete()
    assert dkron.jobs() == []
