"""Browser test of the crontab page: paste a crontab, preview the plan, apply it."""

from __future__ import annotations

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

CRONTAB = "# nightly report\n30 2 * * * echo report\n*/15 * * * * echo tick\n"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def test_crontab_preview_then_apply_creates_the_jobs(agent, page, tmp_path):
    before = {j["name"] for j in agent.call("GET", "/v1/jobs")}
    page.goto(f"{agent.base}/ui/#/crontab")
    page.get_by_label("Crontab", exact=True).fill(CRONTAB)
    page.get_by_label("User (for a user crontab)").fill("root")
    apply = page.get_by_role("button", name="Apply")
    expect(apply).to_be_disabled()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#plan-summary")).to_contain_text("2 to create")
    assert {j["name"] for j in agent.call("GET", "/v1/jobs")} == before  # preview changes nothing
    screenshot(page, tmp_path, "plan")

    apply.click()
    expect(page.locator("#crontab-plan h2")).to_have_text("Applied")
    created = {j["name"] for j in agent.call("GET", "/v1/jobs")} - before
    assert len(created) == 2
    expect(page.locator("#plan-summary")).to_contain_text("Created 2")
    shown = page.locator(".plan-create li").all_inner_texts()
    assert all(any(name in line for line in shown) for name in created)
    report = next(n for n in created if "echo report" in str(agent.call("GET", f"/v1/jobs/{n}")))
    page.get_by_role("link", name=report).click()
    expect(page.locator("#job-fields")).to_contain_text("echo report")
    screenshot(page, tmp_path, "imported-job")


def test_crontab_errors_are_listed_with_their_line(agent, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/crontab")
    page.get_by_label("Crontab", exact=True).fill("61 * * * * echo bad\n")
    page.get_by_label("User (for a user crontab)").fill("root")
    page.get_by_role("button", name="Preview").click()
    errors = page.locator(".plan-errors")
    expect(errors).to_contain_text("bad minute")
    expect(errors).to_contain_text(":1")
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    screenshot(page, tmp_path, "errors")
