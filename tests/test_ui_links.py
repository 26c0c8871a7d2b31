"""Browser tests of the UI's addresses: the Dkron UI's link forms (#/jobs/NAME/show,
#/jobs/NAME/show/executions as django-dkron links them, #/jobs?filter=<json>), jobs whose
names collide with a route word or need percent-encoding, and a job's warnings."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

ODD_NAME = "café-ü"  # lowercase letters beyond ASCII: legal in a job name, percent-encoded in links


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def jobs(agent):
    """flt-ok succeeded, flt-bad failed, flt-off disabled, plus jobs named new and café-ü."""
    agent.create_job("flt-ok", "echo fine")
    agent.create_job("flt-bad", "echo broken >&2; exit 2")
    agent.create_job("flt-off", disabled=True)
    agent.create_job("new", "echo i am a job called new", displayname="")
    agent.create_job(ODD_NAME, "echo accents")
    for name in ("flt-ok", "flt-bad"):
        agent.call("POST", f"/v1/jobs/{name}/run")
    agent.wait_for(
        lambda: (
            agent.call("GET", "/v1/jobs/flt-bad")["status"] == "failed"
            and agent.call("GET", "/v1/jobs/flt-ok")["status"] == "success"
        ),
        what="flt-ok and flt-bad to finish",
    )
    return ["flt-ok", "flt-bad", "flt-off", "new", ODD_NAME]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def row_names(page) -> list[str]:
    return page.locator("#jobs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)")


def test_dkron_show_links_open_the_job_and_its_executions(agent, jobs, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/jobs/flt-bad/show")
    expect(page.locator("h1")).to_have_text("flt-bad")
    expect(page.locator("#job-fields")).to_contain_text("exit 2")

    # django-dkron's "Dkron link" opens the executions: the page scrolls to them.
    page.goto(f"{agent.base}/ui/#/jobs/flt-bad/show/executions")
    heading = page.locator("#exec-h")
    expect(heading).to_be_focused()
    expect(heading).to_be_in_viewport()
    expect(page.locator("#executions-table tbody tr")).to_have_count(1)
    expect(page.locator("#executions-table tbody tr").first).to_have_attribute(
        "data-state", "failed"
    )
    screenshot(page, tmp_path, "show-executions")
    page.goto(f"{agent.base}/ui/#/jobs/flt-ok/show/")
    expect(page.locator("h1")).to_have_text("flt-ok")


def test_a_job_named_new_and_one_needing_percent_encoding_can_be_opened(
    agent, jobs, page, tmp_path
):
    page.goto(f"{agent.base}/ui/#/jobs/new")
    expect(page.locator("h1")).to_have_text("new")
    expect(page.locator("#job-fields")).to_contain_text("i am a job called new")
    expect(page.locator("#f-name")).to_have_count(0)  # not the new-job form
    screenshot(page, tmp_path, "job-called-new")

    # The new-job form has its own address, and the top bar links to it.
    page.get_by_role("link", name="New job").first.click()
    expect(page).to_have_url(f"{agent.base}/ui/#/new")
    expect(page.get_by_label("Name", exact=True)).to_be_editable()

    page.goto(f"{agent.base}/ui/#/jobs?q=caf")
    page.get_by_role("link", name=ODD_NAME).click()
    expect(page).to_have_url(f"{agent.base}/ui/#/jobs/{quote(ODD_NAME, safe='')}")
    expect(page.locator("h1")).to_have_text(ODD_NAME)
    expect(page.locator("#job-fields")).to_contain_text("echo accents")
    page.goto(f"{agent.base}/ui/#/jobs/{quote(ODD_NAME, safe='')}/show/executions")
    expect(page.locator("h1")).to_have_text(ODD_NAME)
    expect(page.locator("#exec-h")).to_be_focused()

    # The Dkron UI's create address names no job here: the page says so and offers the form.
    page.goto(f"{agent.base}/ui/#/jobs/create")
    expect(page.locator("h1")).to_have_text("Job not found")
    page.get_by_role("link", name="Create a new job").click()
    expect(page.get_by_label("Name", exact=True)).to_be_editable()
    # A stray "%" in an address is read as typed, not as a script error.
    page.goto(f"{agent.base}/ui/#/jobs/100%25zz%")
    expect(page.locator("h1")).to_have_text("Job not found")


def test_dkron_filter_links_fill_the_list_filters(agent, jobs, page, tmp_path):
    link = json.dumps({"q": "flt-", "status": "failed"})
    page.goto(f"{agent.base}/ui/#/jobs?filter={quote(link)}")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    assert row_names(page) == ["flt-bad"]
    expect(page.get_by_label("Search")).to_have_value("flt-")
    expect(page.get_by_label("Status")).to_have_value("failed")
    # The address becomes this list's own, so a reload keeps the same list.
    assert page.url.endswith("#/jobs?q=flt-&status=failed")
    screenshot(page, tmp_path, "filter-link")

    # The Dkron UI's dashboard card link, unencoded, with react-admin's 1-based paging.
    page.goto(
        f'{agent.base}/ui/#/jobs?filter={{"disabled":true}}&page=1&perPage=5&sort=id&order=DESC'
    )
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    assert row_names(page) == ["flt-off"]
    expect(page.get_by_label("Enabled")).to_have_value("true")
    expect(page.get_by_label("Per page")).to_have_value("5")

    page.goto(f"{agent.base}/ui/#/jobs?filter={{oops")
    expect(page.locator("#filter-problem")).to_contain_text("not valid JSON")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(len(jobs))


def test_job_warnings_from_the_server_show_on_its_page(agent, jobs, page, tmp_path):
    """The API's `warnings` list (e.g. tags no node can match) is shown above the actions."""
    warning = (
        'no known node has the tag role=worker: this job will never run (tags {"role": "worker:1"})'
    )

    def add_warning(route):
        response = route.fetch()
        body = response.json()
        body["warnings"] = [warning]
        route.fulfill(response=response, json=body)

    page.route(f"{agent.base}/v1/jobs/flt-ok", add_warning)
    page.goto(f"{agent.base}/ui/#/jobs/flt-ok")
    box = page.locator("#job-warnings")
    expect(box).to_be_visible()
    expect(box).to_contain_text("this job will never run")
    expect(page.locator("#job-fields")).not_to_contain_text("this job will never run")
    screenshot(page, tmp_path, "warnings")
