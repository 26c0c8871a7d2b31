"""Browser tests of how the UI shows time and history: a zone on every time and one switch to
UTC, a failed run's error line in the executions table, the job page's chart of its runs and
the dashboard's runs per hour (inline SVG). Real agent, headless Chromium in New York time."""

from __future__ import annotations

import re

import pytest
import ui_support
from playwright.sync_api import expect
from ui_support import screenshot

JOB = "hist-job"
NEW_YORK = re.compile(r"\d\d:\d\d:\d\d (EST|EDT)$")
UTC_TIME = re.compile(r"\d\d:\d\d:\d\d UTC$")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    yield from ui_support.agent_fixture(tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def runs(agent, tmp_path_factory):
    """One trigger of a job that fails twice ("disk full") and succeeds on its third attempt."""
    counter = tmp_path_factory.mktemp("counter") / "n"
    command = (
        f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; "
        'echo "attempt $n"; '
        'if [ $n -lt 3 ]; then echo "disk full on /data" >&2; exit 3; fi; '
        "sleep 0.4; echo done"
    )
    agent.create_job(JOB, command, retries=2, retry_delay="50ms")
    agent.call("POST", f"/v1/jobs/{JOB}/run")

    def finished():
        done = [e for e in agent.executions(JOB) if e["finished_at"] != ui_support.ZERO_TIME]
        return done if len(done) == 3 else None

    return agent.wait_for(finished, what="three attempts of hist-job")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from ui_support.browser_fixture(tmp_path_factory.mktemp("profile"))


@pytest.fixture
def page(browser, tmp_path):
    yield from ui_support.page_fixture(browser, tmp_path)


def test_a_failed_runs_error_line_is_visible_in_the_executions_table(agent, runs, page, tmp_path):
    page.goto(f"{agent.base}/ui/#/jobs/{JOB}")
    rows = page.locator("#executions-table tbody tr")
    expect(rows).to_have_count(3)
    failed = page.locator("#executions-table tbody tr[data-state=failed]")
    expect(failed).to_have_count(2)
    for i in range(2):
        # Read as rendered: nothing inside a closed "Output" counts.
        expect(failed.nth(i)).to_contain_text("exit status 3", use_inner_text=True)
        expect(failed.nth(i)).to_contain_text("disk full on /data", use_inner_text=True)
        expect(failed.nth(i).locator(".error-line")).to_be_visible()
    ok = page.locator("#executions-table tbody tr[data-state=success]")
    expect(ok.locator(".error-line")).to_have_count(0)
    expect(ok.locator("details")).not_to_have_attribute("open", "")
    screenshot(page, tmp_path, "error-lines")


def test_job_page_draws_each_run_as_a_mark_by_time_duration_and_outcome(
    agent, runs, page, tmp_path
):
    page.goto(f"{agent.base}/ui/#/jobs/{JOB}")
    chart = page.locator("svg#history-chart")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", re.compile("1 succeeded, 2 failed"))
    marks = chart.locator(".mark")
    expect(marks).to_have_count(3)
    failed = chart.locator(".mark-failed")
    success = chart.locator(".mark-success")
    expect(failed).to_have_count(2)
    expect(success).to_have_count(1)
    for mark in marks.all():
        title = mark.locator("title").text_content()
        assert re.search(r"(succeeded|failed): started .* (EST|EDT), took \d", title), title
        assert mark.get_attribute("aria-label") == title
        assert mark.get_attribute("role") == "img"
    # Colour by outcome, position by time (across) and duration (up: the 0.4 s success is highest).
    fill = "el => getComputedStyle(el).fill"
    assert success.locator(".mark-shape").evaluate(fill) != failed.first.locator(
        ".mark-shape"
    ).evaluate(fill)
    boxes = {m.get_attribute("data-exec"): m.bounding_box() for m in marks.all()}
    by_start = sorted(runs, key=lambda e: e["started_at"])
    xs = [boxes[e["id"]]["x"] for e in by_start]
    assert xs == sorted(xs)
    top = min(boxes.values(), key=lambda b: b["y"])
    assert top == boxes[next(e["id"] for e in runs if e["success"])]
    screenshot(page, tmp_path, "history-chart")

    # A mark leads to its run: the row opens its output. (Runs 50 ms apart overlap, so the
    # click goes to the mark itself rather than to a point on the screen.)
    failed.first.dispatch_event("click")
    exec_id = failed.first.get_attribute("data-exec")
    expect(page.locator(f'#executions-table tr[data-exec="{exec_id}"] details')).to_have_attribute(
        "open", ""
    )


def test_dashboard_draws_runs_per_hour_over_24_hours(agent, runs, page, tmp_path):
    page.goto(f"{agent.base}/ui/")
    chart = page.locator("svg#runs-per-hour")
    expect(chart).to_be_visible()
    hours = chart.locator(".hour")
    expect(hours).to_have_count(24)
    expect(chart).to_have_attribute("aria-label", re.compile("1 succeeded, 2 failed"))
    counts = hours.evaluate_all(
        "gs => gs.map(g => [g.dataset.hour, +g.dataset.succeeded, +g.dataset.failed])"
    )
    assert sum(c[1] for c in counts) == 1 and sum(c[2] for c in counts) == 2
    # The runs are in the last hour bars (the newest is on the right); each bar says its hour.
    assert sum(c[1] + c[2] for c in counts[-2:]) == 3
    last_title = hours.last.locator("title").text_content()
    assert re.match(r"\d\d:00–\d\d:00 (EST|EDT): \d+ succeeded, \d+ failed", last_title)
    assert hours.last.get_attribute("aria-label") == last_title
    fills = chart.locator(".bar-success, .bar-failed").evaluate_all(
        "rs => rs.map(r => r.getAttribute('class') + ' ' + getComputedStyle(r).fill)"
    )
    assert len({f.split(" ", 1)[1] for f in fills}) == 2, fills
    page.locator(".chart-table summary").click()
    expect(page.locator("#runs-per-hour-table tbody tr")).to_have_count(24)
    screenshot(page, tmp_path, "dashboard-chart")


def test_every_time_carries_its_zone_and_one_switch_shows_them_all_in_utc(
    agent, runs, page, tmp_path
):
    page.goto(f"{agent.base}/ui/#/jobs")
    switch = page.get_by_label("Times in")
    expect(switch).to_have_value("local")
    expect(switch.locator("option").first).to_contain_text("America/New_York")
    row = page.locator(f"#jobs-table tr[data-job={JOB}]")
    for column in ("Last success", "Next run"):
        expect(row.locator(f'td[data-label="{column}"]')).to_have_text(NEW_YORK)
    local_text = row.locator('td[data-label="Last success"]').inner_text()
    try:
        switch.select_option("utc")
        cell = row.locator('td[data-label="Last success"]')
        expect(cell).to_have_text(UTC_TIME)
        assert cell.inner_text()[:16] != local_text[:16]  # moved by New York's offset
        screenshot(page, tmp_path, "list-in-utc")
        # The choice holds on every page and across a reload.
        page.goto(f"{agent.base}/ui/#/jobs/{JOB}")
        started = page.locator('#executions-table td[data-label="Started"]').first
        expect(started).to_have_text(UTC_TIME)
        expect(page.locator('#job-fields dd[data-field="last_success"]')).to_have_text(UTC_TIME)
        expect(page.locator("svg#history-chart .axis-title")).to_have_text("Started (UTC)")
        page.reload()
        expect(page.get_by_label("Times in")).to_have_value("utc")
        expect(page.locator('#executions-table td[data-label="Started"]').first).to_have_text(
            UTC_TIME
        )
        for route in ("#/", "#/busy", "#/nodes", "#/crontab", "#/new"):
            page.goto(f"{agent.base}/ui/{route}")
            expect(page.get_by_label("Times in")).to_have_value("utc")
        # The form's start and end times are entered in the same zone.
        expect(page.locator("#hint-starts_at")).to_have_text("In UTC.")
        page.goto(f"{agent.base}/ui/")
        expect(page.locator("svg#runs-per-hour .axis-title")).to_have_text("Hour (UTC)")
        page.get_by_label("Times in").select_option("local")
        expect(page.locator("svg#runs-per-hour .axis-title")).to_have_text(
            re.compile(r"Hour \((EST|EDT)\)")
        )
    finally:
        page.evaluate("localStorage.removeItem('dkron.times')")
