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


def test_the_pages_example_is_accepted_as_shown_with_user_empty_or_set(agent, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/crontab")
    text = page.get_by_label("Crontab", exact=True)
    user = page.get_by_label("User (for a user crontab)")
    expect(user).to_have_value("")
    expect(page.locator("#crontab-format")).to_contain_text("system crontab")
    # What the box shows as its example, copied in as it is, previews without an error.
    text.fill(text.get_attribute("placeholder"))
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#plan-summary")).to_contain_text("1 to create")
    expect(page.locator(".plan-errors")).to_have_count(0)
    screenshot(page, tmp_path, "system-example")

    # With a user, the example becomes a personal crontab, and it is accepted too.
    user.fill("root")
    expect(page.locator("#crontab-format")).to_contain_text("personal crontab of root")
    page.get_by_role("button", name="Insert the example").click()
    assert "root" not in text.input_value().splitlines()[-1]
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#plan-summary")).to_contain_text("1 to create")
    expect(page.locator(".plan-errors")).to_have_count(0)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#plan-summary")).to_contain_text("Created 1")
    created = [
        j
        for j in agent.call("GET", "/v1/jobs")
        if j["executor_config"].get("command") == "echo hello from cron"
    ]
    assert len(created) == 1


def test_a_personal_crontab_read_as_a_system_one_gets_a_hint(agent, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/crontab")
    page.get_by_label("Crontab", exact=True).fill("*/5 * * * * echo personal\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".plan-errors")).to_be_visible()
    expect(page.locator("#crontab-kind-hint")).to_contain_text("fill in User")
    screenshot(page, tmp_path, "kind-hint")
