"""Browser test of the login form on an agent that requires an API token."""

from __future__ import annotations

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

TOKEN = "ui-secret-token-7"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"), token=TOKEN)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def test_token_login_keeps_the_token_for_the_tab_session(agent, page, tmp_path):
    agent.create_job("secret-job")
    page.goto(f"{agent.base}/ui/#/jobs")
    token_box = page.get_by_label("API token")
    expect(token_box).to_be_visible()
    expect(token_box).to_be_focused()
    expect(page.locator("#jobs-table")).to_have_count(0)  # nothing leaks before login

    token_box.fill("wrong-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("refused")
    screenshot(page, tmp_path, "refused")

    token_box.fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#jobs-table tbody tr[data-job=secret-job]")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dkron.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0  # kept for this tab session only
    screenshot(page, tmp_path, "logged-in")

    page.reload()  # same tab: still logged in
    expect(page.locator("#jobs-table tbody tr[data-job=secret-job]")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dkron.token')") is None
