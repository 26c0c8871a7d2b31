"""Browser test of the Nodes page: the problems this server noticed (here a packet under
another cluster key) above the members, and each server's Raft membership. Real agent,
headless Chromium."""

from __future__ import annotations

import os
import socket

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

from dkron_pkg.swim_codec import HEADER_SEALED


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def test_nodes_page_lists_problems_and_raft_membership(agent, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/nodes")
    expect(page.locator("#nodes-table tr[data-node=ui-node]")).to_contain_text("voter")
    expect(page.locator("#problems")).to_have_count(0)  # nothing wrong yet
    gossip_port = agent.call("GET", "/v1/members")[0]["Port"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.sendto(bytes([HEADER_SEALED]) + os.urandom(80), ("127.0.0.1", gossip_port))
        source = f"127.0.0.1:{stranger.getsockname()[1]}"
    problems = page.get_by_role("region", name="Problems")
    expect(problems).to_contain_text(
        f"a node at {source} sends gossip under another cluster key", timeout=15_000
    )
    expect(problems).to_contain_text("gossip-key")
    screenshot(page, tmp_path, "nodes-problems")
