// Job page: every field, next fire times in two zones, a chart of the last runs, executions
// with live output and each failure's error line, actions.

import { api, ApiError, get, jobPath } from "../api.js";
import { badge, chips, clear, errorBox, h, rerender, tableWrap, toast } from "../dom.js";
import { runHistoryChart } from "../charts.js";
import {
  displayZone,
  executionDuration,
  executionState,
  failureSummary,
  formatDuration,
  formatTime,
  isRunning,
  jobState,
  STATUS_LABELS,
} from "../format.js";
import { renderPreview } from "./preview.js";

// The list shows the tail of each output; "Load full output" fetches the rest.
const LIST_OUTPUT_LIMIT = 2000;

const FIELD_ORDER = [
  ["name", "Name"],
  ["displayname", "Display name"],
  ["schedule", "Schedule"],
  ["timezone", "Time zone"],
  ["executor", "Executor"],
  ["executor_config", "Executor config"],
  ["concurrency", "Concurrency"],
  ["retries", "Retries"],
  ["retry_delay", "Retry delay"],
  ["missed_runs", "Missed runs"],
  ["missed_runs_limit", "Missed runs limit"],
  ["disabled", "Disabled"],
  ["ephemeral", "Ephemeral"],
  ["starts_at", "Starts at"],
  ["expires_at", "Expires at"],
  ["owner", "Owner"],
  ["owner_email", "Owner e-mail"],
  ["parent_job", "Parent job"],
  ["dependent_jobs", "Dependent jobs"],
  ["tags", "Target tags"],
  ["metadata", "Metadata"],
  ["processors", "Processors"],
  ["status", "Status"],
  ["success_count", "Successes"],
  ["error_count", "Errors"],
  ["last_success", "Last success"],
  ["last_error", "Last error"],
  ["next", "Next run"],
];
const TIME_FIELDS = new Set(["starts_at", "expires_at", "last_success", "last_error", "next"]);
const MAP_FIELDS = new Set(["executor_config", "tags", "metadata"]);

function fieldValue(key, value, job) {
  if (TIME_FIELDS.has(key)) return formatTime(value);
  if (MAP_FIELDS.has(key)) return chips(value);
  if (key === "status") return badge(STATUS_LABELS[jobState(job)] || jobState(job), jobState(job));
  if (key === "dependent_jobs" || key === "parent_job") {
    const names = Array.isArray(value) ? value : value ? [value] : [];
    if (!names.length) return h("span", { class: "muted" }, "—");
    return names.map((n, i) => [i ? ", " : "", h("a", { href: `#${jobPath(n)}` }, n)]);
  }
  if (value === null || value === undefined || value === "") return h("span", { class: "muted" }, "—");
  if (typeof value === "object") {
    if (!Object.keys(value).length) return h("span", { class: "muted" }, "—");
    return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
  }
  if (key === "schedule") return h("code", {}, String(value));
  return String(value);
}

function fieldsList(job) {
  const known = new Set(FIELD_ORDER.map(([k]) => k).concat(["id", "running", "warnings"]));
  const extra = Object.keys(job).filter((k) => !known.has(k));
  return h(
    "dl",
    { class: "fields", id: "job-fields" },
    FIELD_ORDER.filter(([k]) => k in job || k === "name").map(([k, label]) => [
      h("dt", {}, label),
      h("dd", { dataset: { field: k } }, fieldValue(k, job[k], job)),
    ]),
    extra.map((k) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, fieldValue(k, job[k], job))]),
  );
}

/** The server's warnings about a job (e.g. tags no known node matches), as text lines. */
function warningLines(job) {
  const list = Array.isArray(job.warnings) ? job.warnings : job.warnings ? [job.warnings] : [];
  return list
    .map((w) => (typeof w === "string" ? w : w && (w.message || w.text || JSON.stringify(w))))
    .filter(Boolean);
}

function notFound(main, name) {
  clear(main);
  main.append(
    h("h1", {}, "Job not found"),
    errorBox(`There is no job named "${name}".`),
    h(
      "p",
      { class: "not-found-links" },
      h("a", { href: "#/jobs" }, "All jobs"),
      " · ",
      h("a", { href: "#/new", id: "create-instead" }, "Create a new job"),
    ),
  );
}

/** options.section = "executions" scrolls to the executions (the Dkron UI's executions tab). */
export async function renderJob(ctx, name, options = {}) {
  ctx.setTitle(name);
  const openOutputs = new Set();
  const fullOutputs = new Map();
  let job = null;
  let executions = [];
  let fastUntil = 0; // after "Run now", poll quickly until the new execution shows up

  const head = h("div", { class: "page-head" });
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Job actions" });
  const fieldsBox = h("section", { "aria-labelledby": "fields-h" });
  const previewBox = h("div", { id: "job-preview" });
  const liveBox = h("section", { id: "live", "aria-labelledby": "live-h", hidden: true });
  const execBox = h("div", { id: "executions" });
  const warningsBox = h("div", { id: "job-warnings-box" });
  const historyBox = h("div", { id: "history", class: "chart-box" });

  async function act(label, fn) {
    try {
      await fn();
    } catch (err) {
      toast(`${label}: ${err.message}`, "error");
      return false;
    }
    await refresh().catch(() => {});
    return true;
  }

  const runNow = () =>
    act("Run", async () => {
      await api("POST", `${jobPath(name)}/run`);
      fastUntil = Date.now() + 15000;
      toast(`Started ${name}.`);
    });
  const toggle = () =>
    act("Toggle", async () => {
      const { data } = await api("POST", `${jobPath(name)}/toggle`);
      toast(data && data.disabled ? `Disabled ${name}.` : `Enabled ${name}.`);
    });
  const remove = async () => {
    if (!window.confirm(`Delete job ${name} and all its executions?`)) return;
    try {
      await api("DELETE", jobPath(name));
      toast(`Deleted ${name}.`);
      ctx.navigate("#/jobs");
    } catch (err) {
      toast(`Delete: ${err.message}`, "error");
    }
  };
  const stop = (exec) =>
    act("Stop", async () => {
      await api("DELETE", `${jobPath(name)}/executions/${encodeURIComponent(exec.id)}`);
      toast(`Stopping ${exec.id}.`);
    });

  function drawHead() {
    const state = jobState(job);
    const running = executions.filter(isRunning);
    rerender(head, () =>
      h(
        "div",
        { class: "title-line" },
        h("h1", {}, job.displayname || job.name),
        job.displayname ? h("span", { class: "muted" }, job.name) : null,
        h(
          "span",
          { class: "badges", id: "job-badges" },
          badge(STATUS_LABELS[state] || state, state),
          job.running || running.length ? badge("running", "running") : null,
          job.disabled ? badge("disabled", "disabled") : null,
        ),
      ),
    );
    const warnings = warningLines(job);
    rerender(warningsBox, () =>
      warnings.length
        ? h(
            "div",
            { class: "warning-box", id: "job-warnings", role: "status" },
            h("strong", {}, warnings.length === 1 ? "Warning" : "Warnings"),
            h("ul", {}, warnings.map((w) => h("li", {}, w))),
          )
        : h("span"),
    );
    rerender(toolbar, () =>
      h(
        "div",
        { class: "toolbar-inner" },
        h("button", { type: "button", class: "primary", id: "run-now", dataset: { focusKey: "run" }, onclick: runNow }, "Run now"),
        h("button", { type: "button", id: "toggle", dataset: { focusKey: "toggle" }, onclick: toggle }, job.disabled ? "Enable" : "Disable"),
        h("a", { class: "button", id: "edit", href: `#${jobPath(name)}/edit` }, "Edit"),
        running.length
          ? h("button", { type: "button", class: "danger", id: "stop", dataset: { focusKey: "stop" }, onclick: () => Promise.all(running.map(stop)) }, "Stop")
          : null,
        h("button", { type: "button", class: "danger", id: "delete", dataset: { focusKey: "delete" }, onclick: remove }, "Delete"),
      ),
    );
  }

  /** Show one run's row: scroll to it, open its output and mark it for a moment. */
  function pickExecution(exec) {
    openOutputs.add(exec.id);
    drawExecutions();
    const row = execBox.querySelector(`tr[data-exec="${CSS.escape(exec.id)}"]`);
    if (!row) return;
    row.scrollIntoView({ block: "center" });
    row.classList.add("picked");
    setTimeout(() => row.classList.remove("picked"), 2000);
    const summary = row.querySelector("summary");
    if (summary) summary.focus({ preventScroll: true });
  }

  function drawHistory() {
    rerender(historyBox, () => {
      if (!executions.length) return h("p", { class: "muted" }, "No runs yet.");
      const zone = displayZone();
      const width = Math.max(280, Math.floor(historyBox.clientWidth || 720));
      return h(
        "figure",
        { class: "chart-figure" },
        runHistoryChart(executions, { width, zone, onPick: pickExecution }),
        h(
          "figcaption",
          { class: "legend" },
          h("span", { class: "key key-success" }, "● succeeded"),
          h("span", { class: "key key-failed" }, "◆ failed"),
          h("span", { class: "key key-running" }, "○ running"),
          h("span", { class: "muted" }, " · last 100 runs; click a mark to see its run"),
        ),
      );
    });
  }

  function errorLine(exec) {
    const text = failureSummary(exec);
    if (!text) return null;
    return h("p", { class: "error-line", title: text }, h("span", { class: "visually-hidden" }, "Error: "), text);
  }

  function outputBlock(exec) {
    const full = fullOutputs.get(exec.id);
    const text = full !== undefined ? full : exec.output || "";
    const details = h(
      "details",
      { open: openOutputs.has(exec.id), dataset: { exec: exec.id } },
      h("summary", { dataset: { focusKey: `out-${exec.id}` } }, "Output"),
      h("pre", { class: "output" }, text || "(no output)"),
      exec.output_truncated && full === undefined
        ? h("button", {
            type: "button",
            class: "small",
            dataset: { focusKey: `full-${exec.id}` },
            onclick: async () => {
              const { data } = await get(`${jobPath(name)}/executions/${encodeURIComponent(exec.id)}`);
              fullOutputs.set(exec.id, (data && data.output) || "");
              drawExecutions();
            },
          }, "Load full output")
        : null,
    );
    details.addEventListener("toggle", () => {
      if (details.open) openOutputs.add(exec.id);
      else openOutputs.delete(exec.id);
    });
    return details;
  }

  function drawExecutions() {
    rerender(execBox, () => {
      if (!executions.length) return h("p", { class: "muted", id: "no-executions" }, "This job has not run yet.");
      return tableWrap(
        h(
          "table",
          { class: "data cards-on-phone", id: "executions-table" },
          h(
            "thead",
            {},
            h("tr", {}, ["Started", "Finished", "Status", "Node", "Attempt", "Duration", "Output", ""].map((t) => h("th", { scope: "col" }, t))),
          ),
          h(
            "tbody",
            {},
            executions.map((e) => {
              const state = executionState(e);
              return h(
                "tr",
                { dataset: { exec: e.id, state } },
                h("td", { "data-label": "Started" }, formatTime(e.started_at)),
                h("td", { "data-label": "Finished" }, isRunning(e) ? "—" : formatTime(e.finished_at)),
                h("td", { "data-label": "Status" }, badge(state, state)),
                h("td", { "data-label": "Node" }, e.node_name || "—"),
                h("td", { "data-label": "Attempt" }, String(e.attempt ?? "—")),
                h("td", { "data-label": "Duration" }, formatDuration(executionDuration(e))),
                h("td", { "data-label": "Output", class: "output-cell" }, errorLine(e), outputBlock(e)),
                h(
                  "td",
                  {},
                  isRunning(e)
                    ? h("button", { type: "button", class: "danger small", dataset: { focusKey: `stop-${e.id}` }, "aria-label": `Stop execution ${e.id}`, onclick: () => stop(e) }, "Stop")
                    : null,
                ),
              );
            }),
          ),
        ),
        "Executions",
      );
    });
  }

  async function drawLive() {
    const running = executions.filter(isRunning);
    liveBox.hidden = running.length === 0;
    if (!running.length) return;
    const full = await Promise.all(
      running.map((e) =>
        get(`${jobPath(name)}/executions/${encodeURIComponent(e.id)}`).then(
          (r) => r.data || e,
          () => e,
        ),
      ),
    );
    if (!ctx.alive()) return;
    rerender(liveBox, () =>
      h(
        "div",
        {},
        h("h2", { id: "live-h" }, "Live output"),
        full.map((e) =>
          h(
            "div",
            { class: "live-run" },
            h("p", {}, `${e.node_name || ""} · started ${formatTime(e.started_at)} · running for ${formatDuration(executionDuration(e))}`),
            h("pre", { class: "output live-output", dataset: { exec: e.id } }, e.output || "(no output yet)"),
          ),
        ),
      ),
    );
  }

  let lastPreviewKey = "";
  async function refresh() {
    const [jobRes, execRes] = await Promise.all([
      get(jobPath(name)),
      get(`${jobPath(name)}/executions`, { output_size_limit: LIST_OUTPUT_LIMIT }),
    ]);
    if (!ctx.alive()) return;
    job = jobRes.data;
    executions = Array.isArray(execRes.data) ? execRes.data : [];
    executions.sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
    drawHead();
    rerender(fieldsBox, () => h("div", {}, h("h2", { id: "fields-h" }, "Details"), fieldsList(job)));
    drawExecutions();
    drawHistory();
    const previewKey = `${job.schedule}|${job.timezone}|${job.disabled}`;
    if (previewKey !== lastPreviewKey) {
      lastPreviewKey = previewKey;
      renderPreview(previewBox, job);
    }
    await drawLive();
  }

  const execHeading = h("h2", { id: "exec-h", tabindex: "-1" }, "Executions");
  ctx.main.append(
    head,
    warningsBox,
    toolbar,
    h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "Run history"), historyBox),
    h(
      "div",
      { class: "two-col" },
      fieldsBox,
      h(
        "section",
        { "aria-labelledby": "preview-h" },
        h("h2", { id: "preview-h" }, "Next runs"),
        h("p", { class: "muted small" }, `Times on this page: ${displayZone()} (the "Times in" switch at the top changes it).`),
        previewBox,
      ),
    ),
    liveBox,
    h("section", { "aria-labelledby": "exec-h", id: "executions-section" }, execHeading, execBox),
  );
  try {
    await refresh();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound(ctx.main, name);
      return;
    }
    throw err;
  }
  if (options.section === "executions") {
    execHeading.scrollIntoView({ block: "start" });
    execHeading.focus({ preventScroll: true });
  }
  // Poll faster while something runs so output and the end of a run show up promptly.
  let lastPoll = 0;
  ctx.every(1000, async () => {
    const busy = Date.now() < fastUntil || (job && (job.running || executions.some(isRunning)));
    if (!busy && Date.now() - lastPoll < 3000) return;
    lastPoll = Date.now();
    await refresh();
  });
}
