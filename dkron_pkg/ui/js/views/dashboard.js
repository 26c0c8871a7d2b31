// Dashboard: leader, job counts by state, nodes, and the jobs that failed most recently.

import { ApiError, get, getPage, jobPath } from "../api.js";
import { badge, chips, h, rerender, tableWrap } from "../dom.js";
import { formatTime } from "../format.js";
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

export async function renderDashboard(ctx) {
  ctx.setTitle("Dashboard");
  const leaderName = h("strong", { id: "leader-name" }, "…");
  const nodesBox = h("div", { id: "dashboard-nodes" });
  const failuresBox = h("div", { id: "dashboard-failures" });
  ctx.main.append(
    h("h1", {}, "Dashboard"),
    h("p", { class: "leader-line" }, "Leader: ", leaderName),
    countCards(),
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
  const draw = () => Promise.all([drawNodes(), drawFailures(), drawCounts()]);
  await draw();
  ctx.every(5000, draw);
}
