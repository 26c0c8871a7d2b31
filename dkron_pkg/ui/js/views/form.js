// Create/edit form: a field per job property, a JSON view kept in sync, a live schedule
// preview, and the server's validation message shown next to the field it names.

import { api, ApiError, get, jobPath } from "../api.js";
import { h, toast } from "../dom.js";
import { displayZone, timesMode } from "../format.js";
import { kvEditor } from "./kv.js";
import { renderPreview } from "./preview.js";

// Server-maintained fields: shown on the job page, never sent back.
const SERVER_FIELDS = [
  "id",
  "success_count",
  "error_count",
  "last_success",
  "last_error",
  "dependent_jobs",
  "status",
  "next",
  "running",
];

// Shell mode on by default: pipes, redirections and $(( )) work as people expect (Dkron #986).
const EXECUTOR_DEFAULTS = {
  shell: { command: "", shell: "true" },
  http: { method: "GET", url: "" },
};

const TEXT_FIELDS = [
  "name",
  "displayname",
  "schedule",
  "timezone",
  "executor",
  "concurrency",
  "retry_delay",
  "missed_runs",
  "owner",
  "owner_email",
  "parent_job",
];

/** RFC 3339 -> value of an <input type="datetime-local"> in the display zone (yours or UTC). */
export function toLocalInput(iso) {
  if (!iso || iso.startsWith("0001-01-01")) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (timesMode() === "utc") return d.toISOString().slice(0, 16);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** <input type="datetime-local"> value (display zone) -> RFC 3339 UTC, or null when empty. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(timesMode() === "utc" ? `${value}Z` : value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function blankJob() {
  return {
    name: "",
    displayname: "",
    schedule: "",
    timezone: "",
    executor: "shell",
    executor_config: { ...EXECUTOR_DEFAULTS.shell },
    concurrency: "allow",
    retries: 0,
    disabled: false,
    ephemeral: false,
    owner: "",
    owner_email: "",
    parent_job: "",
    tags: {},
    metadata: {},
    processors: {},
    starts_at: null,
    expires_at: null,
  };
}

function editableCopy(job) {
  const copy = JSON.parse(JSON.stringify(job));
  for (const key of SERVER_FIELDS) delete copy[key];
  return copy;
}

function fieldBox(field, label, control, hint) {
  return h(
    "div",
    { class: "field", id: `field-${field}` },
    h("label", { for: `f-${field}` }, label),
    control,
    hint ? h("p", { class: "hint", id: `hint-${field}` }, hint) : null,
    h("p", { class: "field-error", id: `err-${field}`, role: "alert" }),
  );
}

function input(field, attrs = {}) {
  const describedBy = `hint-${field} err-${field}`;
  return h("input", { id: `f-${field}`, name: field, "aria-describedby": describedBy, ...attrs });
}

function selectBox(field, options) {
  return h(
    "select",
    { id: `f-${field}`, name: field, "aria-describedby": `err-${field}` },
    options.map(([value, text]) => h("option", { value }, text)),
  );
}

export async function renderJobForm(ctx, name) {
  const editing = Boolean(name);
  ctx.setTitle(editing ? `Edit ${name}` : "New job");
  let base = blankJob();
  if (editing) base = editableCopy((await get(jobPath(name))).data || {});
  if (!ctx.alive()) return;

  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const el = {
    name: input("name", { required: true, readonly: editing, autocomplete: "off", spellcheck: "false" }),
    displayname: input("displayname"),
    schedule: input("schedule", { required: true, autocomplete: "off", spellcheck: "false", placeholder: "0 */5 * * * *  or  @every 1m" }),
    timezone: input("timezone", { list: "tz-list", autocomplete: "off", placeholder: "e.g. Europe/Berlin (empty = server local time)" }),
    executor: input("executor", { list: "executor-list", autocomplete: "off" }),
    concurrency: selectBox("concurrency", [["allow", "allow overlapping runs"], ["forbid", "forbid overlapping runs"]]),
    retries: input("retries", { type: "number", min: "0", step: "1", inputmode: "numeric" }),
    retry_delay: input("retry_delay", { placeholder: "e.g. 30s (empty = growing backoff)" }),
    missed_runs: selectBox("missed_runs", [["skip", "skip (as Dkron)"], ["once", "run once"], ["all", "run each, up to the limit"]]),
    missed_runs_limit: input("missed_runs_limit", { type: "number", min: "0", step: "1", inputmode: "numeric" }),
    disabled: h("input", { id: "f-disabled", name: "disabled", type: "checkbox" }),
    ephemeral: h("input", { id: "f-ephemeral", name: "ephemeral", type: "checkbox" }),
    starts_at: input("starts_at", { type: "datetime-local" }),
    expires_at: input("expires_at", { type: "datetime-local" }),
    owner: input("owner"),
    owner_email: input("owner_email", { type: "email" }),
    parent_job: input("parent_job", { autocomplete: "off" }),
    processors: h("textarea", { id: "f-processors", name: "processors", rows: "3", spellcheck: "false", "aria-describedby": "hint-processors err-processors" }),
  };
  const kv = {
    executor_config: kvEditor("executor_config", "Executor config", sync),
    tags: kvEditor("tags", "Target tags", sync),
    metadata: kvEditor("metadata", "Metadata", sync),
  };
  const jsonView = h("textarea", {
    id: "f-json",
    rows: "18",
    spellcheck: "false",
    class: "json-editor",
    "aria-describedby": "err-json",
  });
  const jsonError = h("p", { class: "field-error", id: "err-json", role: "alert" });
  const formError = h("div", { class: "form-error", id: "form-error", role: "alert" });
  const previewBox = h("div", { id: "schedule-preview", "aria-live": "polite" });
  let extras = {}; // fields this form has no control for (kept as they are)
  let configTouched = editing; // until someone edits the config, an executor change resets it

  const isCheckbox = (k) => k === "disabled" || k === "ephemeral";

  /** Current job from the controls; throws Error(field) text when a control holds bad input. */
  function readForm() {
    const job = { ...extras };
    for (const k of TEXT_FIELDS) job[k] = el[k].value.trim();
    job.retries = Number(el.retries.value || 0);
    job.missed_runs_limit = Number(el.missed_runs_limit.value || 0);
    job.disabled = el.disabled.checked;
    job.ephemeral = el.ephemeral.checked;
    job.starts_at = fromLocalInput(el.starts_at.value);
    job.expires_at = fromLocalInput(el.expires_at.value);
    for (const [k, editor] of Object.entries(kv)) job[k] = editor.read();
    const text = el.processors.value.trim();
    if (text) {
      try {
        job.processors = JSON.parse(text);
      } catch {
        job.processors = text; // reported by checkLocal() before sending
      }
    } else {
      job.processors = {};
    }
    return job;
  }

  function writeForm(job) {
    const known = new Set([...TEXT_FIELDS, "retries", "missed_runs_limit", "disabled", "ephemeral", "starts_at", "expires_at", "processors", ...Object.keys(kv)]);
    extras = {};
    for (const [k, v] of Object.entries(job)) if (!known.has(k) && !SERVER_FIELDS.includes(k)) extras[k] = v;
    for (const k of TEXT_FIELDS) {
      if (document.activeElement === el[k]) continue;
      el[k].value = job[k] ?? "";
    }
    if (!job.missed_runs) el.missed_runs.value = "skip";
    if (!job.concurrency) el.concurrency.value = "allow";
    el.retries.value = String(job.retries ?? 0);
    el.missed_runs_limit.value = String(job.missed_runs_limit ?? 10);
    el.disabled.checked = Boolean(job.disabled);
    el.ephemeral.checked = Boolean(job.ephemeral);
    el.starts_at.value = toLocalInput(job.starts_at);
    el.expires_at.value = toLocalInput(job.expires_at);
    for (const [k, editor] of Object.entries(kv)) editor.write(job[k] || {});
    const procs = job.processors && Object.keys(job.processors).length ? JSON.stringify(job.processors, null, 2) : "";
    if (document.activeElement !== el.processors) el.processors.value = procs;
  }

  function sync() {
    if (document.activeElement === jsonView) return;
    jsonView.value = JSON.stringify(readForm(), null, 2);
    jsonError.textContent = "";
  }

  function onJsonInput() {
    configTouched = true;
    let parsed;
    try {
      parsed = JSON.parse(jsonView.value);
    } catch (err) {
      jsonError.textContent = `Not valid JSON: ${err.message}`;
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      jsonError.textContent = "The job must be a JSON object.";
      return;
    }
    jsonError.textContent = "";
    writeForm(parsed);
    schedulePreview();
  }

  let previewTimer = null;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(async () => {
      const job = readForm();
      const message = await renderPreview(previewBox, job).catch((err) => err.message);
      if (message === undefined || !ctx.alive()) return;
      el.schedule.setAttribute("aria-invalid", message ? "true" : "false");
    }, 300);
  }

  function clearErrors() {
    formError.textContent = "";
    for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
    for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  }

  /** Put `message` next to the control for `field` ("schedule", "executor_config.timeout", …). */
  function showFieldError(field, message) {
    const [top, sub] = field.split(/\.(.+)/);
    const slot = form.querySelector(`#err-${CSS.escape(top)}`);
    if (!slot) {
      formError.textContent = message;
      formError.focus();
      return;
    }
    slot.textContent = message;
    let control = el[top] || null;
    if (kv[top]) control = (sub && kv[top].keyInput(sub)) || kv[top].firstInput();
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
    formError.textContent = "The job was not saved: see the message next to the field.";
  }

  function checkLocal(job) {
    if (typeof job.processors === "string") return ["processors", "Processors must be a JSON object, e.g. {\"log\": {}}."];
    if (!Number.isInteger(job.retries) || job.retries < 0) return ["retries", "Retries must be a whole number, 0 or more."];
    if (!job.name) return ["name", "A job needs a name."];
    return null;
  }

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    let job;
    if (document.activeElement === jsonView) onJsonInput();
    try {
      job = readForm();
    } catch (err) {
      formError.textContent = err.message;
      return;
    }
    const local = checkLocal(job);
    if (local) return showFieldError(...local);
    saveButton.disabled = true;
    try {
      if (editing) await api("PUT", jobPath(name), { body: job });
      else await api("POST", "/jobs", { body: job });
      toast(`Saved ${job.name}.`);
      ctx.navigate(`#${jobPath(job.name)}`);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showFieldError(err.field || guessField(err.message), err.message);
    } finally {
      saveButton.disabled = false;
    }
  }

  const saveButton = h("button", { type: "submit", class: "primary", id: "save" }, editing ? "Save changes" : "Create job");
  const form = h(
    "form",
    { class: "job-form", id: "job-form", novalidate: true, onsubmit: submit },
    formError,
    h(
      "div",
      { class: "form-grid" },
      h(
        "fieldset",
        {},
        h("legend", {}, "Job"),
        fieldBox("name", "Name", el.name, editing ? "The name cannot change." : "Lowercase letters, digits, _ and -."),
        fieldBox("displayname", "Display name", el.displayname),
        fieldBox("schedule", "Schedule", el.schedule, "Six fields with seconds, a descriptor like @daily, @every 10s, @at <time> or @manually."),
        previewBox,
        fieldBox("timezone", "Time zone", el.timezone),
        h("datalist", { id: "tz-list" }, zones.map((z) => h("option", { value: z }))),
        fieldBox("parent_job", "Parent job", el.parent_job, "Run after this job succeeds instead of on a schedule."),
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "What runs"),
        fieldBox("executor", "Executor", el.executor),
        h("datalist", { id: "executor-list" }, Object.keys(EXECUTOR_DEFAULTS).map((x) => h("option", { value: x }))),
        kv.executor_config.el,
        fieldBox("concurrency", "Concurrency", el.concurrency),
        fieldBox("retries", "Retries", el.retries, "Extra attempts after a failure."),
        fieldBox("retry_delay", "Retry delay", el.retry_delay),
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "When"),
        h("div", { class: "field check" }, el.disabled, h("label", { for: "f-disabled" }, "Disabled"), h("p", { class: "field-error", id: "err-disabled" })),
        h("div", { class: "field check" }, el.ephemeral, h("label", { for: "f-ephemeral" }, "Ephemeral (delete after its first success)"), h("p", { class: "field-error", id: "err-ephemeral" })),
        fieldBox("starts_at", "Starts at", el.starts_at, `In ${displayZone()}.`),
        fieldBox("expires_at", "Expires at", el.expires_at, `In ${displayZone()}.`),
        fieldBox("missed_runs", "Missed runs", el.missed_runs, "What to do with runs missed while the cluster was down."),
        fieldBox("missed_runs_limit", "Missed runs limit", el.missed_runs_limit),
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "Placement and ownership"),
        kv.tags.el,
        kv.metadata.el,
        fieldBox("owner", "Owner", el.owner),
        fieldBox("owner_email", "Owner e-mail", el.owner_email),
        fieldBox("processors", "Processors (JSON)", el.processors, 'e.g. {"log": {}, "files": {"forward": "true"}}'),
      ),
    ),
    h(
      "details",
      { class: "json-view", open: true },
      h("summary", {}, "JSON"),
      h("label", { for: "f-json" }, "The same job as JSON (edit either side)"),
      jsonView,
      jsonError,
    ),
    h(
      "div",
      { class: "form-actions" },
      saveButton,
      h("a", { class: "button", href: editing ? `#${jobPath(name)}` : "#/jobs" }, "Cancel"),
    ),
  );

  form.addEventListener("input", (ev) => {
    if (ev.target === jsonView) return onJsonInput();
    const control = ev.target;
    if (kv.executor_config.contains(control)) configTouched = true;
    if (control.getAttribute("aria-invalid") === "true" && control !== el.schedule) control.removeAttribute("aria-invalid");
    sync();
    if ([el.schedule, el.timezone, el.parent_job].includes(control)) schedulePreview();
  });
  form.addEventListener("change", (ev) => {
    if (ev.target === el.executor && !configTouched) {
      const defaults = EXECUTOR_DEFAULTS[el.executor.value.trim()];
      if (defaults) kv.executor_config.write(defaults);
    }
    if (ev.target !== jsonView) sync();
  });
  jsonView.addEventListener("blur", sync);

  writeForm(base);
  sync();
  ctx.main.append(h("h1", {}, editing ? `Edit ${name}` : "New job"), form);
  schedulePreview();
  (editing ? el.displayname : el.name).focus();
}

/** Older servers send no X-Error-Field: find the field from Dkron's message wording. */
export function guessField(message) {
  const m = message.toLowerCase();
  if (m.includes("schedule")) return "schedule";
  if (m.includes("timezone") || m.includes("time zone")) return "timezone";
  if (m.includes("name")) return "name";
  if (m.includes("parent")) return "parent_job";
  if (m.includes("concurrency")) return "concurrency";
  if (m.includes("timeout") || m.includes("mem_limit")) return "executor_config";
  return "";
}
