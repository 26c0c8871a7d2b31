// Dashboard: leader, job counts by state, runs per hour over 24 hours, nodes, and the jobs
// that failed most recently.

import { ApiError, get, getPage, jobPath } from "../api.js";
import { hourlyRunsChart, hourText, runsPerHour } from "../charts.js";
import { badge, chips, h, rerender, tableWrap } from "../dom.js";
import { displayZone, formatClock, formatTime, zoneLabel } from "../format.js";
import { memberStatus } from "./nodes.js";

// One cheap request per count: the server filters, X-Total-Count answers, one row comes back.
const COUNTS = [
  { key: "total", label: "Total jobs", query: {}, href: "#/jobs" },
  { key: "success", label: "Succeeded", query: { status: "success" }, href: "#/jobs?status=success" },
  { key: "failed", label: "Failed", query: { status: "failed" }, href: "#/jobs?status=failed" },
  {
    key: "untriggered",
    label: "Never run",
    query: { status: "untriggered" },
    href: "#/jobs?status=untriggered",
  },
  { key: "running", label: "Running", query: { status: "running" }, href: "#/jobs?status=running" },
  { key: "disabled", label: "Disabled", query: { disabled: "true" }, href: "#/jobs?disabled=true" },
];

async function loadLeader() {
  try {
    const { data } = await get("/leader");
    return data && data.Name ? data.Name : "";
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 503)) return "";
    throw err;
  }
}

/** The count cards, drawn at once with "…" and filled in as each answer arrives. */
function countCards() {
  return h(
    "ul",
    { class: "cards", "aria-label": "Job counts" },
    COUNTS.map((c) =>
      h(
        "li",
        { class: `card stat stat-${c.key}` },
        h(
          "a",
          { href: c.href, dataset: { count: c.key } },
          h("span", { class: "stat-value", id: `count-${c.key}` }, "…"),
          h("span", { class: "stat-label" }, c.label),
        ),
      ),
    ),
  );
}

function nodesTable(members, leader) {
  return tableWrap(
    h(
      "table",
      { class: "data" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Role", "Tags"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        members.map((m) =>
          h(
            "tr",
            {},
            h("td", { "data-label": "Name" }, m.Name, m.Name === leader ? [" ", badge("leader", "leader")] : null),
            h("td", { "data-label": "Status" }, badge(memberStatus(m), memberStatus(m))),
            h("td", { "data-label": "Role" }, (m.Tags || {}).server === "true" ? "server" : "agent"),
            h("td", { "data-label": "Tags" }, chips(m.Tags)),
          ),
        ),
      ),
    ),
    "Cluster members",
  );
}

function failuresList(jobs) {
  if (!jobs.length) return h("p", { class: "muted" }, "No failing jobs.");
  return h(
    "ul",
    { class: "failures" },
    jobs.map((j) =>
      h(
        "li",
        {},
        h("a", { href: `#${jobPath(j.name)}` }, j.displayname || j.name),
        " ",
        badge("failed"),
        h("span", { class: "muted" }, ` last error ${formatTime(j.last_error)}`),
      ),
    ),
  );
}

// There is no cluster-wide executions endpoint: the chart reads the executions of the jobs
// that ran in the window, at most this many of them (the most recently active first).
const ACTIVE_JOB_LIMIT = 200;
const PARALLEL_REQUESTS = 6;
const DAY = 24 * 3600 * 1000;

const lastActivity = (job) =>
  Math.max(Date.parse(job.last_success) || 0, Date.parse(job.last_error) || 0);

/** Run fn over items, at most `limit` at a time; a failing call gives []. */
async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]).catch(() => []);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The executions of every job that finished a run in the last 24 hours (outputs left out). */
async function recentRuns(now) {
  const since = now - DAY;
  const lists = await Promise.all(
    ["last_success", "last_error"].map((key) =>
      getPage("/jobs", { _sort: key, _order: "DESC", _start: 0, _end: ACTIVE_JOB_LIMIT }),
    ),
  );
  const active = new Map();
  let capped = false;
  for (const { items } of lists) {
    for (const job of items) if (lastActivity(job) >= since) active.set(job.name, lastActivity(job));
    if (items.length === ACTIVE_JOB_LIMIT && lastActivity(items[items.length - 1]) >= since) capped = true;
  }
  const names = [...active.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
  if (names.length > ACTIVE_JOB_LIMIT) capped = true;
  const picked = names.slice(0, ACTIVE_JOB_LIMIT);
  const runs = await mapLimited(picked, PARALLEL_REQUESTS, (name) =>
    get(`${jobPath(name)}/executions`, { output_size_limit: 0 }).then((r) => (Array.isArray(r.data) ? r.data : [])),
  );
  return { runs: runs.flat(), jobs: picked.length, capped };
}

function hourlyTable(buckets, zone) {
  return h(
    "details",
    { class: "chart-table" },
    h("summary", {}, "The same as a table"),
    tableWrap(
      h(
        "table",
        { class: "data compact", id: "runs-per-hour-table" },
        h("thead", {}, h("tr", {}, [`Hour (${zoneLabel(zone)})`, "Succeeded", "Failed"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          buckets.map((b) =>
            h("tr", {}, h("td", {}, formatClock(new Date(b.start), zone)), h("td", {}, String(b.succeeded)), h("td", {}, String(b.failed))),
          ),
        ),
      ),
      "Runs per hour",
    ),
  );
}

function activitySection(box, data, now) {
  const zone = displayZone();
  const buckets = runsPerHour(data.runs, now, zone);
  const width = Math.max(280, Math.floor(box.clientWidth || 720));
  const current = buckets[buckets.length - 1];
  return h(
    "figure",
    { class: "chart-figure" },
    hourlyRunsChart(buckets, { width, zone }),
    h(
      "figcaption",
      { class: "legend" },
      h("span", { class: "key key-success" }, "■ succeeded"),
      h("span", { class: "key key-failed" }, "■ failed"),
      h("span", { class: "muted", id: "runs-this-hour" }, ` · this hour: ${hourText(current, zone)}`),
      data.capped ? h("span", { class: "muted" }, ` · counted over the ${data.jobs} most recently active jobs`) : null,
    ),
    hourlyTable(buckets, zone),
  );
}

export async function renderDashboard(ctx) {
  ctx.setTitle("Dashboard");
  const leaderName = h("strong", { id: "leader-name" }, "…");
  const nodesBox = h("div", { id: "dashboard-nodes" });
  const failuresBox = h("div", { id: "dashboard-failures" });
  const activityBox = h("div", { id: "dashboard-activity", class: "chart-box" }, h("p", { class: "muted" }, "Counting runs…"));
  ctx.main.append(
    h("h1", {}, "Dashboard"),
    h("p", { class: "leader-line" }, "Leader: ", leaderName),
    countCards(),
    h(
      "section",
      { "aria-labelledby": "activity-h" },
      h("h2", { id: "activity-h" }, "Runs per hour, last 24 hours"),
      activityBox,
    ),
    h("section", { "aria-labelledby": "nodes-h" }, h("h2", { id: "nodes-h" }, "Nodes"), nodesBox),
    h("section", { "aria-labelledby": "fail-h" }, h("h2", { id: "fail-h" }, "Recent failures"), failuresBox),
  );

  // Each part is drawn as soon as its own answer arrives: with many jobs the counts take
  // longest, and the leader and nodes should not wait for them.
  const drawCounts = () =>
    Promise.all(
      COUNTS.map(async (c) => {
        const { total } = await getPage("/jobs", { ...c.query, _start: 0, _end: 1 });
        if (ctx.alive()) document.getElementById(`count-${c.key}`).textContent = String(total);
      }),
    );
  const drawNodes = async () => {
    const [leader, members] = await Promise.all([
      loadLeader(),
      get("/members").then((r) => (Array.isArray(r.data) ? r.data : [])),
    ]);
    if (!ctx.alive()) return;
    leaderName.textContent = leader || "none (no leader elected)";
    rerender(nodesBox, () => nodesTable(members, leader));
  };
  const drawFailures = async () => {
    const failures = await getPage("/jobs", {
      status: "failed",
      _sort: "last_error",
      _order: "DESC",
      _start: 0,
      _end: 10,
    });
    if (ctx.alive()) rerender(failuresBox, () => failuresList(failures.items));
  };
  const drawActivity = async () => {
    const now = Date.now();
    const data = await recentRuns(now);
    if (ctx.alive()) rerender(activityBox, () => activitySection(activityBox, data, now));
  };
  const draw = () => Promise.all([drawNodes(), drawFailures(), drawCounts()]);
  await Promise.all([draw(), drawActivity()]);
  ctx.every(5000, draw);
  ctx.every(60000, drawActivity);
}
