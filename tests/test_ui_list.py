"""Browser tests of the jobs list, the dashboard, the busy and nodes pages, and a phone-sized
screen. Real agent, headless Chromium."""

from __future__ import annotations

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

TEAM_A = [f"list-a{i:02d}" for i in range(12)]
TEAM_B = ["list-b-one", "list-b-two"]


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def jobs(agent):
    """Fourteen jobs: twelve of team a (one failing), two of team b (one disabled, one tagged)."""
    for name in TEAM_A:
        command = "exit 3" if name == "list-a05" else "echo ok"
        agent.create_job(name, command, metadata={"team": "a"})
    agent.create_job("list-b-one", metadata={"team": "b"}, disabled=True)
    agent.create_job("list-b-two", metadata={"team": "b"}, tags={"role": "dkron"})
    agent.call("POST", "/v1/jobs/list-a05/run")
    agent.wait_for(
        lambda: agent.call("GET", "/v1/jobs/list-a05")["status"] == "failed",
        what="list-a05 to fail",
    )
    return TEAM_A + TEAM_B


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def row_names(page) -> list[str]:
    return page.locator("#jobs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)")


def expect_rows(page, names: list[str]) -> None:
    expect(page.locator("#jobs-table tbody tr")).to_have_count(len(names))
    assert row_names(page) == names


def test_search_filters_sort_and_pages_come_from_the_server(agent, jobs, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/jobs?size=10")
    expect(page.locator("#jobs-range")).to_contain_text("1–10 of 14")
    assert row_names(page) == sorted(jobs)[:10]
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#jobs-range")).to_contain_text("11–14 of 14")
    assert row_names(page) == sorted(jobs)[10:]

    page.get_by_label("Search").fill("b-")
    expect_rows(page, ["list-b-one", "list-b-two"])
    expect(page.locator("#jobs-range")).to_contain_text("1–2 of 2")
    # The list is sorted by name ascending; one click on the header sorts descending.
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Name")
    page.get_by_role("button", name="Name").click()
    expect_rows(page, ["list-b-two", "list-b-one"])
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")

    page.get_by_label("Search").fill("")
    page.get_by_label("Enabled").select_option("true")
    expect_rows(page, ["list-b-one"])
    expect(page.locator("#jobs-table")).to_contain_text("disabled")
    page.get_by_label("Enabled").select_option("")

    page.get_by_label("Status").select_option("failed")
    expect_rows(page, ["list-a05"])
    page.get_by_label("Status").select_option("")

    page.get_by_label("Metadata").fill("team=b")
    expect_rows(page, ["list-b-two", "list-b-one"])
    page.get_by_label("Tags").fill("role=dkron")
    expect_rows(page, ["list-b-two"])
    screenshot(page, tmp_path, "filtered")
    # The filters live in the address, so a reload shows the same list.
    page.reload()
    expect_rows(page, ["list-b-two"])
    expect(page.get_by_label("Tags")).to_have_value("role=dkron")


def test_bulk_run_toggle_and_delete_selected_jobs(agent, jobs, page, tmp_path):
    agent.create_job("bulk-one", "echo one")
    agent.create_job("bulk-two", "echo two")
    page.goto(f"{agent.base}/ui/#/jobs?q=bulk-")
    expect_rows(page, ["bulk-one", "bulk-two"])
    select_all = page.get_by_label("Select all jobs on this page")
    select_all.check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.get_by_role("button", name="Run selected").click()
    for name in ("bulk-one", "bulk-two"):
        agent.wait_for(
            lambda name=name: agent.call("GET", f"/v1/jobs/{name}")["status"] == "success",
            what=f"{name} to run",
        )
    expect(page.locator("#jobs-table tbody .badge-success")).to_have_count(2, timeout=10_000)

    select_all.check()
    page.get_by_role("button", name="Toggle selected").click()
    expect(page.locator("#jobs-table tbody .badge-disabled")).to_have_count(2)
    assert agent.call("GET", "/v1/jobs/bulk-one")["disabled"] is True
    assert agent.call("GET", "/v1/jobs/bulk-two")["disabled"] is True

    page.get_by_label("Select bulk-two").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete selected").click()
    expect_rows(page, ["bulk-one"])
    names = [j["name"] for j in agent.call("GET", "/v1/jobs?q=bulk-")]
    assert names == ["bulk-one"]
    screenshot(page, tmp_path, "after-bulk")


def test_dashboard_counts_nodes_and_recent_failures(agent, jobs, page, tmp_path):
    page.goto(f"{agent.base}/ui/")
    expect(page.locator("#leader-name")).to_have_text("ui-node")
    total = len(agent.call("GET", "/v1/jobs"))
    expect(page.locator("[data-count=total] .stat-value")).to_have_text(str(total))
    expect(page.locator("[data-count=failed] .stat-value")).to_have_text("1")
    disabled = len(agent.call("GET", "/v1/jobs?disabled=true"))
    expect(page.locator("[data-count=disabled] .stat-value")).to_have_text(str(disabled))
    never = len(agent.call("GET", "/v1/jobs?status=untriggered"))
    expect(page.locator("[data-count=untriggered] .stat-value")).to_have_text(str(never))
    expect(page.locator(".failures")).to_contain_text("list-a05")
    nodes = page.get_by_role("region", name="Cluster members")
    expect(nodes).to_contain_text("ui-node")
    expect(nodes).to_contain_text("alive")
    expect(nodes).to_contain_text("server=true")
    screenshot(page, tmp_path, "dashboard")
    page.locator(".failures a", has_text="list-a05").click()
    expect(page).to_have_url(f"{agent.base}/ui/#/jobs/list-a05")


def test_busy_page_lists_a_running_job_and_stops_it(agent, jobs, page, tmp_path):
    agent.create_job("busy-sleeper", "echo busy-output; sleep 30")
    agent.call("POST", "/v1/jobs/busy-sleeper/run")
    # The jobs list shows a running badge and can filter on it.
    page.goto(f"{agent.base}/ui/#/jobs?status=running")
    expect_rows(page, ["busy-sleeper"])
    expect(page.locator("#jobs-table tr[data-job=busy-sleeper] .badge-running")).to_be_visible()
    page.get_by_role("link", name="Busy", exact=True).click()
    row = page.locator("#busy-table tbody tr[data-job=busy-sleeper]")
    expect(row).to_contain_text("busy-output")
    expect(row).to_contain_text("ui-node")
    screenshot(page, tmp_path, "busy")
    row.get_by_role("button", name="Stop busy-sleeper").click()
    expect(page.locator("#busy-empty")).to_be_visible(timeout=15_000)
    runs = agent.executions("busy-sleeper")
    assert len(runs) == 1 and runs[0]["success"] is False


def test_nodes_page_and_keyboard_navigation(agent, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/nodes")
    expect(page.locator("#nodes-table tr[data-node=ui-node]")).to_contain_text("leader")
    expect(page.locator("#nodes-table")).to_contain_text("alive")
    # Tab order starts with the skip link, then real links in the top bar; Enter follows them.
    page.keyboard.press("Tab")
    expect(page.locator("#skip-link")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Dashboard")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Dashboard")
    screenshot(page, tmp_path, "nodes-keyboard")


def test_phone_sized_screen_has_no_sideways_scrolling(agent, jobs, browser, tmp_path):
    tab = browser.context.new_page()
    try:
        tab.set_viewport_size({"width": 375, "height": 740})
        routes = ("#/busy", "#/nodes", "#/crontab", "#/", "#/jobs", "#/jobs/list-a05", "#/new")
        for route in routes:
            tab.goto(f"{agent.base}/ui/{route}")
            expect(tab.locator("h1")).to_be_visible()
            tab.wait_for_load_state("networkidle")
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{route} is {width} px wide on a 375 px screen"
        expect(tab.locator("#f-name")).to_be_visible()
        screenshot(tab, tmp_path, "phone-form")
        tab.goto(f"{agent.base}/ui/#/jobs")
        # Rows become cards with their labels on a phone.
        cell = tab.locator("#jobs-table tbody tr").first.locator("td[data-label=Schedule]")
        label = cell.evaluate("td => getComputedStyle(td, '::before').content")
        assert "Schedule" in label
        screenshot(tab, tmp_path, "phone-jobs")
    finally:
        tab.close()
