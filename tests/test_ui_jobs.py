"""Browser tests of the job pages: create through the form, run, output, edit, toggle, stop,
and a validation message next to the schedule field. Real agent, headless Chromium."""

from __future__ import annotations

import json

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import ZERO_TIME, ApiCallError, screenshot


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def open_ui(page, agent, route: str = "") -> None:
    page.goto(f"{agent.base}/ui/{route}")


def execution_rows(page):
    return page.locator("#executions-table tbody tr")


def test_create_job_through_form_then_run_it_and_read_its_output(agent, page, tmp_path):
    open_ui(page, agent, "#/new")
    page.get_by_label("Name", exact=True).fill("ui-created")
    page.get_by_label("Display name").fill("Created in the browser")
    page.get_by_label("Schedule", exact=True).fill("0 30 9 * * *")
    page.get_by_label("Time zone").fill("Asia/Tokyo")
    # The preview of the next fire times follows the schedule as it is typed.
    preview = page.locator("#schedule-preview .preview-table tbody tr")
    expect(preview).to_have_count(5)
    expect(page.locator("#schedule-preview thead")).to_contain_text("Asia/Tokyo")
    expect(preview.first.locator("td").first).to_contain_text("09:30:00")
    page.get_by_label("Executor config value 1").fill("echo out-$((6 * 7)); echo err-line >&2")
    # The JSON view shows the same job.
    shown = json.loads(page.locator("#f-json").input_value())
    assert shown["name"] == "ui-created"
    assert shown["executor_config"]["command"].startswith("echo out-")
    screenshot(page, tmp_path, "form-filled")
    page.get_by_role("button", name="Create job").click()

    expect(page).to_have_url(f"{agent.base}/ui/#/jobs/ui-created")
    expect(page.locator("h1")).to_have_text("Created in the browser")
    stored = agent.call("GET", "/v1/jobs/ui-created")
    assert stored["schedule"] == "0 30 9 * * *"
    assert stored["timezone"] == "Asia/Tokyo"
    assert stored["executor"] == "shell"
    # Next runs in the job's zone and in the viewer's (the browser runs in New York).
    expect(page.locator("#job-preview thead")).to_contain_text("America/New_York")
    expect(page.locator("#job-preview tbody tr")).to_have_count(5)

    page.get_by_role("button", name="Run now").click()
    row = execution_rows(page).first
    expect(row).to_have_attribute("data-state", "success", timeout=20_000)
    row.locator("summary").click()
    output = row.locator("pre.output")
    expect(output).to_contain_text("out-42")
    expect(output).to_contain_text("err-line")
    expect(row).to_contain_text("ui-node")  # the node that ran it
    screenshot(page, tmp_path, "after-run")
    runs = agent.executions("ui-created")
    assert len(runs) == 1 and runs[0]["success"] is True
    assert "out-42" in runs[0]["output"]


def test_edit_job_keeps_form_and_json_in_sync_and_saves(agent, page, tmp_path):
    agent.create_job("ui-edit", "echo before", metadata={"team": "blue"}, retries=1)
    open_ui(page, agent, "#/jobs/ui-edit/edit")
    name = page.get_by_label("Name", exact=True)
    expect(name).to_have_value("ui-edit")
    expect(name).to_have_attribute("readonly", "")
    page.get_by_label("Display name").fill("Edited name")
    page.get_by_label("Executor config value 1").fill("echo after")
    page.get_by_role("button", name="Add metadata entry").click()
    page.get_by_label("Metadata key 2").fill("tier")
    page.get_by_label("Metadata value 2").fill("gold")
    shown = json.loads(page.locator("#f-json").input_value())
    assert shown["displayname"] == "Edited name"
    assert shown["metadata"] == {"team": "blue", "tier": "gold"}
    # Editing the JSON updates the form too.
    shown["retries"] = 4
    page.locator("#f-json").fill(json.dumps(shown, indent=2))
    expect(page.get_by_label("Retries", exact=True)).to_have_value("4")
    screenshot(page, tmp_path, "edit-form")
    page.get_by_role("button", name="Save changes").click()

    expect(page).to_have_url(f"{agent.base}/ui/#/jobs/ui-edit")
    expect(page.locator("h1")).to_have_text("Edited name")
    expect(page.locator("#job-fields")).to_contain_text("tier=gold")
    stored = agent.call("GET", "/v1/jobs/ui-edit")
    assert stored["displayname"] == "Edited name"
    assert stored["executor_config"] == {"command": "echo after", "shell": "true"}
    assert stored["metadata"] == {"team": "blue", "tier": "gold"}
    assert stored["retries"] == 4


def test_toggle_disables_and_enables_the_job(agent, page, tmp_path):
    agent.create_job("ui-toggle")
    open_ui(page, agent, "#/jobs/ui-toggle")
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#job-badges")).to_contain_text("disabled")
    expect(page.get_by_role("button", name="Enable")).to_be_visible()
    assert agent.call("GET", "/v1/jobs/ui-toggle")["disabled"] is True
    screenshot(page, tmp_path, "disabled")
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("button", name="Disable")).to_be_visible()
    expect(page.locator("#job-badges")).not_to_contain_text("disabled")
    assert agent.call("GET", "/v1/jobs/ui-toggle")["disabled"] is False


def test_bad_schedule_shows_the_server_message_next_to_the_schedule_field(agent, page, tmp_path):
    open_ui(page, agent, "#/new")
    page.get_by_label("Name", exact=True).fill("ui-bad-schedule")
    schedule = page.get_by_label("Schedule", exact=True)
    schedule.fill("61 * * * * *")
    page.get_by_label("Executor config value 1").fill("echo never")
    # While typing, the preview already says what is wrong.
    expect(page.locator("#schedule-preview .preview-error")).not_to_be_empty()
    page.get_by_role("button", name="Create job").click()

    message = page.locator("#field-schedule .field-error")
    expect(message).to_contain_text("can't parse job schedule")
    expect(schedule).to_have_attribute("aria-invalid", "true")
    expect(schedule).to_be_focused()
    expect(page.locator("#field-name .field-error")).to_be_empty()
    screenshot(page, tmp_path, "validation-error")
    try:
        agent.call("GET", "/v1/jobs/ui-bad-schedule")
        raise AssertionError("a job with a bad schedule was stored")
    except ApiCallError as e:
        assert e.status == 404


def test_stop_a_running_job_from_its_page_with_live_output(agent, page, tmp_path):
    agent.create_job("ui-sleeper", "echo sleeping-now; sleep 30; echo never-printed")
    open_ui(page, agent, "#/jobs/ui-sleeper")
    page.get_by_role("button", name="Run now").click()
    expect(execution_rows(page).first).to_have_attribute("data-state", "running")
    expect(page.locator("#job-badges")).to_contain_text("running")
    expect(page.locator("#live .live-output")).to_contain_text("sleeping-now")
    screenshot(page, tmp_path, "running")

    page.locator("#stop").click()
    row = execution_rows(page).first
    expect(row).to_have_attribute("data-state", "failed", timeout=15_000)
    expect(page.locator("#live")).to_be_hidden()
    runs = agent.executions("ui-sleeper")
    assert len(runs) == 1
    assert runs[0]["finished_at"] != ZERO_TIME
    assert runs[0]["success"] is False
    assert "never-printed" not in runs[0]["output"]
    screenshot(page, tmp_path, "stopped")


def test_long_output_is_cut_in_the_list_and_loaded_in_full_on_demand(agent, page, tmp_path):
    agent.create_job("ui-long-output", "seq 1 3000")
    agent.call("POST", "/v1/jobs/ui-long-output/run")
    agent.wait_for(
        lambda: agent.call("GET", "/v1/jobs/ui-long-output")["status"] == "success",
        what="ui-long-output to finish",
    )
    open_ui(page, agent, "#/jobs/ui-long-output")
    row = execution_rows(page).first
    row.locator("summary").click()
    output = row.locator("pre.output")
    expect(output).to_contain_text("2999\n3000")
    assert not output.inner_text().startswith("1\n2\n3\n")  # only the tail was fetched
    row.get_by_role("button", name="Load full output").click()
    expect(row.locator("pre.output")).to_have_text(
        "\n".join(str(i) for i in range(1, 3001)), use_inner_text=True
    )
    screenshot(page, tmp_path, "full-output")


def test_delete_from_the_job_page_after_confirmation(agent, page, tmp_path):
    agent.create_job("ui-delete-me")
    open_ui(page, agent, "#/jobs/ui-delete-me")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete").click()
    assert agent.call("GET", "/v1/jobs/ui-delete-me")["name"] == "ui-delete-me"  # kept
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{agent.base}/ui/#/jobs")
    expect(page.locator("h1")).to_have_text("Jobs")
    try:
        agent.call("GET", "/v1/jobs/ui-delete-me")
        raise AssertionError("the job is still there")
    except ApiCallError as e:
        assert e.status == 404
    page.goto(f"{agent.base}/ui/#/jobs/ui-delete-me")
    expect(page.locator("h1")).to_have_text("Job not found")
