// Jobs list: search, filters, server-side sort and pagination, running badges, bulk actions.

import { api, getPage, jobPath } from "../api.js";
import { badge, h, rerender, tableWrap, toast } from "../dom.js";
import { formatTime, jobState, STATUS_LABELS } from "../format.js";

const PAGE_SIZES = [5, 10, 25, 50, 100];
const SORT_KEYS = ["name", "displayname", "schedule", "success_count", "error_count", "last_success", "last_error", "next"];
const COLUMNS = [
  { key: "name", label: "Name", sort: "name" },
  { key: "schedule", label: "Schedule", sort: "schedule" },
  { key: "status", label: "Status" },
  { key: "last_success", label: "Last success", sort: "last_success" },
  { key: "last_error", label: "Last error", sort: "last_error" },
  { key: "next", label: "Next run", sort: "next" },
  { key: "counts", label: "OK / failed", sort: "success_count" },
  { key: "enabled", label: "Enabled" },
];

/** "a=1, b=2" -> [["a","1"],["b","2"]]; pairs without "=" are ignored. */
export function parsePairs(text) {
  return (text || "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.includes("="))
    .map((p) => {
      const at = p.indexOf("=");
      return [p.slice(0, at).trim(), p.slice(at + 1).trim()];
    })
    .filter(([k]) => k);
}

/**
 * The list's state from the address. Two forms are understood: this UI's own
 * (?q=..&status=..&page=0&size=25) and the Dkron UI's react-admin links
 * (?filter={"q":"..","status":"failed","disabled":true}&sort=id&order=ASC&page=1&perPage=10),
 * whose page numbers start at 1. `problem` says what in a link could not be used.
 */
export function stateFromQuery(query) {
  const dkronLink = query.has("filter") || query.has("perPage");
  let filter = {};
  let problem = "";
  if (query.has("filter")) {
    try {
      const parsed = JSON.parse(query.get("filter") || "{}");
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) filter = parsed;
      else problem = "The link's filter is not a JSON object; showing all jobs.";
    } catch {
      problem = "The link's filter is not valid JSON; showing all jobs.";
    }
  }
  const pick = (key) => {
    const value = key in filter ? filter[key] : query.get(key);
    return value === null || value === undefined ? "" : String(value);
  };
  const size = Number(query.get(dkronLink && query.has("perPage") ? "perPage" : "size")) || 25;
  const rawPage = Number(query.get("page")) || 0;
  const sort = query.get("sort") === "id" ? "name" : query.get("sort") || "name";
  return {
    q: pick("q"),
    status: pick("status"),
    disabled: pick("disabled"),
    tags: query.get("tags") || "",
    metadata: query.get("metadata") || "",
    sort: SORT_KEYS.includes(sort) ? sort : "name",
    order: query.get("order") === "DESC" ? "DESC" : "ASC",
    page: Math.max(0, dkronLink ? rawPage - 1 : rawPage),
    size: PAGE_SIZES.includes(size) ? size : 25,
    dkronLink,
    problem,
  };
}

function stateToHash(state) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (k === "dkronLink" || k === "problem") continue;
    const defaults = { sort: "name", order: "ASC", page: 0, size: 25 };
    if (v !== "" && v !== defaults[k]) q.set(k, String(v));
  }
  const s = q.toString();
  return `#/jobs${s ? `?${s}` : ""}`;
}

function apiQuery(state) {
  const q = new URLSearchParams();
  if (state.q) q.set("q", state.q);
  if (state.status) q.set("status", state.status);
  if (state.disabled) q.set("disabled", state.disabled);
  for (const [k, v] of parsePairs(state.metadata)) q.append(`metadata[${k}]`, v);
  for (const [k, v] of parsePairs(state.tags)) q.append(`tags[${k}]`, v);
  q.set("_sort", state.sort);
  q.set("_order", state.order);
  q.set("_start", String(state.page * state.size));
  q.set("_end", String((state.page + 1) * state.size));
  return q;
}

const STATUS_OPTIONS = [
  ["", "any"],
  ["running", "running now"],
  ["success", "success"],
  ["failed", "failed"],
  ["partially_failed", "partially failed"],
  ["untriggered", "never run"],
];

/** The status choices, plus the one a link asked for if it is not among them. */
function statusOptions(current) {
  if (!current || STATUS_OPTIONS.some(([v]) => v === current)) return STATUS_OPTIONS;
  return [...STATUS_OPTIONS, [current, current]];
}

function select(id, label, value, options, onchange) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h(
      "select",
      { id, onchange },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
    ),
  );
}

export async function renderJobs(ctx) {
  ctx.setTitle("Jobs");
  const state = stateFromQuery(ctx.query);
  // A Dkron UI link is rewritten into this list's own address, so reload and sharing keep it.
  if (state.dkronLink) history.replaceState(null, "", stateToHash(state));
  const selected = new Set();
  let rows = [];
  let total = 0;

  const tableBox = h("div", { class: "jobs-table" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const bulkCount = h("span", { id: "bulk-count", "aria-live": "polite" }, "0 selected");
  const bulkButtons = ["Run", "Toggle", "Delete"].map((label) =>
    h("button", { type: "button", class: label === "Delete" ? "danger" : "", disabled: true, dataset: { bulk: label.toLowerCase() }, onclick: () => bulk(label.toLowerCase()) }, `${label} selected`),
  );

  const reload = async () => {
    const page = await getPage("/jobs", apiQuery(state));
    if (!ctx.alive()) return;
    rows = page.items;
    total = page.total;
    drawTable();
    drawPager();
  };

  const change = (patch) => {
    Object.assign(state, patch);
    if (!("page" in patch)) state.page = 0;
    history.replaceState(null, "", stateToHash(state));
    selected.clear();
    updateBulk();
    reload().catch((err) => toast(err.message, "error"));
  };

  let typing = null;
  const onText = (key) => (ev) => {
    clearTimeout(typing);
    const value = ev.target.value.trim();
    typing = setTimeout(() => change({ [key]: value }), 250);
  };

  function updateBulk() {
    bulkCount.textContent = `${selected.size} selected`;
    for (const b of bulkButtons) b.disabled = selected.size === 0;
  }

  async function bulk(action) {
    const names = [...selected];
    if (!names.length) return;
    if (action === "delete" && !window.confirm(`Delete ${names.length} job(s)? Their executions are deleted too.`)) return;
    const path = { run: "/run", toggle: "/toggle", delete: "" }[action];
    const method = action === "delete" ? "DELETE" : "POST";
    const results = await Promise.allSettled(names.map((n) => api(method, jobPath(n) + path)));
    const failed = results.filter((r) => r.status === "rejected");
    const verb = { run: "Started", toggle: "Toggled", delete: "Deleted" }[action];
    toast(`${verb} ${names.length - failed.length} of ${names.length} job(s).`);
    for (const r of failed) toast(r.reason.message, "error");
    selected.clear();
    updateBulk();
    await reload();
  }

  function sortHeader(col) {
    if (!col.sort) return h("th", { scope: "col" }, col.label);
    const active = state.sort === col.sort;
    const ariaSort = active ? (state.order === "ASC" ? "ascending" : "descending") : "none";
    const arrow = active ? (state.order === "ASC" ? " ▲" : " ▼") : "";
    return h(
      "th",
      { scope: "col", "aria-sort": ariaSort },
      h(
        "button",
        {
          type: "button",
          class: "sort",
          dataset: { sort: col.sort, focusKey: `sort-${col.sort}` },
          onclick: () => change({ sort: col.sort, order: active && state.order === "ASC" ? "DESC" : "ASC" }),
        },
        col.label,
        arrow,
      ),
    );
  }

  function row(job) {
    const state_ = jobState(job);
    const href = `#${jobPath(job.name)}`;
    const check = h("input", {
      type: "checkbox",
      "aria-label": `Select ${job.name}`,
      checked: selected.has(job.name),
      dataset: { focusKey: `check-${job.name}` },
      onchange: (ev) => {
        if (ev.target.checked) selected.add(job.name);
        else selected.delete(job.name);
        updateBulk();
      },
    });
    return h(
      "tr",
      { dataset: { job: job.name } },
      h("td", { class: "check" }, check),
      h(
        "td",
        { "data-label": "Name" },
        h("a", { href, dataset: { focusKey: `link-${job.name}` } }, job.displayname || job.name),
        job.displayname ? h("div", { class: "muted small" }, job.name) : null,
      ),
      h("td", { "data-label": "Schedule" }, h("code", {}, job.schedule || (job.parent_job ? `after ${job.parent_job}` : "—"))),
      h(
        "td",
        { "data-label": "Status", class: "status-cell" },
        badge(STATUS_LABELS[state_] || state_, state_),
        job.running ? [" ", badge("running", "running")] : null,
      ),
      h("td", { "data-label": "Last success" }, formatTime(job.last_success)),
      h("td", { "data-label": "Last error" }, formatTime(job.last_error)),
      h("td", { "data-label": "Next run" }, job.disabled ? "—" : formatTime(job.next)),
      h("td", { "data-label": "OK / failed" }, `${job.success_count || 0} / ${job.error_count || 0}`),
      h("td", { "data-label": "Enabled" }, job.disabled ? badge("disabled", "disabled") : "yes"),
    );
  }

  function drawTable() {
    rerender(tableBox, () => {
      if (!rows.length) {
        return h("p", { class: "empty", id: "jobs-empty" }, total ? "No jobs on this page." : "No jobs match.");
      }
      const all = rows.every((j) => selected.has(j.name));
      const checkAll = h("input", {
        type: "checkbox",
        "aria-label": "Select all jobs on this page",
        checked: all,
        dataset: { focusKey: "check-all" },
        onchange: (ev) => {
          for (const j of rows) {
            if (ev.target.checked) selected.add(j.name);
            else selected.delete(j.name);
          }
          updateBulk();
          drawTable();
        },
      });
      return tableWrap(
        h(
          "table",
          { class: "data cards-on-phone", id: "jobs-table" },
          h("caption", { class: "visually-hidden" }, "Jobs"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "check" }, checkAll), COLUMNS.map(sortHeader))),
          h("tbody", {}, rows.map(row)),
        ),
        "Jobs",
      );
    });
  }

  function drawPager() {
    const first = total ? state.page * state.size + 1 : 0;
    const last = Math.min(total, (state.page + 1) * state.size);
    const pages = Math.max(1, Math.ceil(total / state.size));
    rerender(pager, () =>
      h(
        "div",
        { class: "pager-inner" },
        h("button", { type: "button", disabled: state.page === 0, dataset: { focusKey: "prev" }, onclick: () => change({ page: state.page - 1 }) }, "← Previous"),
        h("span", { id: "jobs-range" }, `${first}–${last} of ${total}`, h("span", { class: "muted" }, ` · page ${state.page + 1} of ${pages}`)),
        h("button", { type: "button", disabled: last >= total, dataset: { focusKey: "next" }, onclick: () => change({ page: state.page + 1 }) }, "Next →"),
      ),
    );
  }

  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs", onsubmit: (ev) => ev.preventDefault() },
    h(
      "div",
      { class: "field grow" },
      h("label", { for: "filter-q" }, "Search"),
      h("input", { id: "filter-q", type: "search", value: state.q, placeholder: "name or display name", oninput: onText("q") }),
    ),
    select("filter-status", "Status", state.status, statusOptions(state.status), (ev) => change({ status: ev.target.value })),
    select("filter-disabled", "Enabled", state.disabled, [["", "any"], ["false", "enabled"], ["true", "disabled"]], (ev) => change({ disabled: ev.target.value })),
    h(
      "div",
      { class: "field" },
      h("label", { for: "filter-tags" }, "Tags"),
      h("input", { id: "filter-tags", value: state.tags, placeholder: "key=value, …", oninput: onText("tags") }),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "filter-metadata" }, "Metadata"),
      h("input", { id: "filter-metadata", value: state.metadata, placeholder: "key=value, …", oninput: onText("metadata") }),
    ),
    select("filter-size", "Per page", String(state.size), PAGE_SIZES.map((n) => [String(n), String(n)]), (ev) => change({ size: Number(ev.target.value) })),
  );

  ctx.main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Jobs"), h("a", { class: "button primary", href: "#/new" }, "New job")),
    state.problem ? h("p", { class: "error-box", id: "filter-problem", role: "alert" }, state.problem) : null,
    filters,
    h("div", { class: "bulk", role: "toolbar", "aria-label": "Bulk actions" }, bulkCount, bulkButtons),
    tableBox,
    pager,
  );
  await reload();
  ctx.every(5000, reload);
}
