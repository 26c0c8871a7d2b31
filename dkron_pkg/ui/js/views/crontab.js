// Crontab import: paste or upload a crontab, preview the plan, apply it.

import { api, ApiError, jobPath } from "../api.js";
import { append, clear, errorBox, h, toast } from "../dom.js";

/**
 * One planned change as {name, words, command}. The API may send a job, a bare job name, or
 * {job, schedule_words} (the schedule in plain words).
 */
function describeChange(item) {
  if (typeof item === "string") return { name: item, words: "", command: "" };
  const job = item.job || item;
  const config = job.executor_config || {};
  return { name: job.name, words: item.schedule_words || job.schedule || "", command: config.command || "" };
}

function planSection(title, items, kind, applied) {
  if (!items || !items.length) return null;
  return h(
    "section",
    { class: `plan-${kind}` },
    h("h3", {}, `${title} (${items.length})`),
    h(
      "ul",
      {},
      items.map((item) => {
        const { name, words, command } = describeChange(item);
        return h(
          "li",
          {},
          // Jobs still to be created do not exist yet: no link until the plan is applied.
          kind === "create" && !applied ? h("strong", {}, name) : h("a", { href: `#${jobPath(name)}` }, name),
          words ? h("span", {}, ` · ${words}`) : null,
          command ? [" · ", h("code", {}, command)] : null,
        );
      }),
    ),
  );
}

/** An error or warning as text: plain strings, or {text} / {file, line, word, detail}. */
function issueText(issue) {
  if (typeof issue === "string") return issue;
  if (issue.text) return issue.text;
  return `${issue.file || ""}:${issue.line ?? ""}: ${issue.word || ""}${issue.detail ? ` (${issue.detail})` : ""}`;
}

function messages(title, list, kind) {
  if (!list || !list.length) return null;
  return h(
    "section",
    { class: `plan-${kind}`, role: kind === "errors" ? "alert" : null },
    h("h3", {}, title),
    h("ul", {}, list.map((m) => h("li", {}, h("code", {}, issueText(m))))),
  );
}

function drawPlan(box, plan, applied) {
  clear(box);
  const counts = ["create", "update", "delete"].map((k) => (plan[k] || []).length);
  append(box, [
    h("h2", {}, applied ? "Applied" : "Plan"),
    h(
      "p",
      { id: "plan-summary" },
      applied
        ? `Created ${counts[0]}, updated ${counts[1]}, deleted ${counts[2]}`
        : `${counts[0]} to create, ${counts[1]} to update, ${counts[2]} to delete`,
      typeof plan.unchanged === "number" ? `, ${plan.unchanged} unchanged.` : ".",
      plan.blocked ? " Nothing will be applied while there are errors." : "",
    ),
    messages("Errors", plan.errors, "errors"),
    messages("Warnings", plan.warnings, "warnings"),
    planSection(applied ? "Created" : "Create", plan.create, "create", applied),
    planSection(applied ? "Updated" : "Update", plan.update, "update", applied),
    planSection(applied ? "Deleted" : "Delete", plan.delete, "delete", applied),
  ]);
}

// The example follows the kind of crontab the server will read: with User empty it reads a
// system crontab, whose lines carry a user column; with User set, a personal one without it.
// Both examples are accepted as shown (root exists on every host) and run as written.
const EXAMPLES = {
  system: "# m h dom mon dow user command\n*/5 * * * * root echo hello from cron",
  user: "# m h dom mon dow command\n*/5 * * * * echo hello from cron",
};

function formatHint(user) {
  if (!user) {
    return [
      "Read as a system crontab (like /etc/crontab): minute hour day-of-month month day-of-week ",
      h("strong", {}, "user"),
      " command. For a personal crontab (as ",
      h("code", {}, "crontab -l"),
      " prints it, with no user column), fill in User.",
    ];
  }
  return [
    "Read as the personal crontab of ",
    h("strong", {}, user),
    ": minute hour day-of-month month day-of-week command (no user column).",
  ];
}

/** A hint when a personal crontab was read as a system one (its command taken for a user). */
function kindHint(plan, user) {
  const errors = (plan.errors || []).map((e) => (typeof e === "string" ? e : e.text || ""));
  if (user || !errors.some((e) => e.includes("bad username"))) return null;
  return h(
    "p",
    { class: "hint-box", id: "crontab-kind-hint" },
    "These lines look like a personal crontab (no user column): fill in User with the account they should run as, then preview again.",
  );
}

/**
 * The text to send. Lines typed in the box end where the box ends: the last one gets its
 * newline (Debian cron rejects a *file* without one, which a text box is not). An uploaded
 * file left as it was is sent as it is, so the preview tells the truth about that file.
 */
function crontabBody(value, uploaded) {
  if (value === uploaded || value === "" || value.endsWith("\n")) return value;
  return `${value}\n`;
}

export async function renderCrontab(ctx) {
  ctx.setTitle("Crontab import");
  const text = h("textarea", { id: "crontab-text", rows: "12", spellcheck: "false", class: "json-editor", placeholder: EXAMPLES.system, "aria-describedby": "crontab-format" });
  const formatLine = h("p", { class: "hint", id: "crontab-format" }, formatHint(""));
  const file = h("input", { id: "crontab-file", type: "file", accept: "text/*,.crontab,*" });
  const dialect = h("select", { id: "crontab-dialect" }, h("option", { value: "debian" }, "Debian cron (one bad line rejects the file)"), h("option", { value: "cronie" }, "cronie (bad lines skipped)"));
  const user = h("input", { id: "crontab-user", autocomplete: "off", placeholder: "empty = system crontab with a user column" });
  const example = h("button", { type: "button", class: "small", id: "crontab-example" }, "Insert the example");
  const planBox = h("div", { id: "crontab-plan", "aria-live": "polite" });
  const applyButton = h("button", { type: "button", class: "primary", id: "crontab-apply", disabled: true }, "Apply");
  let previewed = "";
  let uploaded = null; // an uploaded file's text, sent byte for byte while left unedited

  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    text.value = await f.text();
    uploaded = text.value;
    previewed = "";
    applyButton.disabled = true;
  });
  text.addEventListener("input", () => {
    applyButton.disabled = text.value !== previewed;
  });
  const kind = () => (user.value.trim() ? "user" : "system");
  user.addEventListener("input", () => {
    text.placeholder = EXAMPLES[kind()];
    clear(formatLine);
    append(formatLine, [formatHint(user.value.trim())]);
    previewed = "";
    applyButton.disabled = true;
  });
  example.addEventListener("click", () => {
    text.value = `${EXAMPLES[kind()]}\n`;
    previewed = "";
    applyButton.disabled = true;
    text.focus();
  });

  const query = () => ({ dialect: dialect.value, user: user.value.trim() });
  async function call(action) {
    try {
      const { data } = await api("POST", `/crontab/${action}`, {
        query: query(),
        body: crontabBody(text.value, uploaded),
        bodyType: "text/x-crontab",
      });
      return data || {};
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        clear(planBox);
        planBox.append(errorBox("This server has no crontab import."));
        return null;
      }
      if (err instanceof ApiError && err.status === 400) {
        const plan = err.body && typeof err.body === "object" ? err.body : { errors: [err.message] };
        drawPlan(planBox, plan, false);
        const hint = kindHint(plan, user.value.trim());
        if (hint) planBox.prepend(hint);
        return null;
      }
      throw err;
    }
  }

  const preview = async (ev) => {
    ev.preventDefault();
    const plan = await call("preview");
    if (!plan) return;
    drawPlan(planBox, plan, false);
    previewed = text.value;
    // Debian's rules reject the whole file on one bad line; cronie's skip the line.
    const blocked = "blocked" in plan ? plan.blocked : Boolean(plan.errors && plan.errors.length);
    applyButton.disabled = Boolean(blocked);
  };
  applyButton.addEventListener("click", async () => {
    if (text.value !== previewed) return;
    const plan = await call("apply");
    if (!plan) return;
    drawPlan(planBox, plan, true);
    toast("Crontab applied.");
    applyButton.disabled = true;
  });

  ctx.main.append(
    h("h1", {}, "Import a crontab"),
    h(
      "form",
      { class: "crontab-form", onsubmit: preview },
      h("div", { class: "field" }, h("label", { for: "crontab-text" }, "Crontab"), text, h("div", { class: "format-line" }, formatLine, example)),
      h("div", { class: "row" },
        h("div", { class: "field" }, h("label", { for: "crontab-file" }, "…or upload a file"), file),
        h("div", { class: "field" }, h("label", { for: "crontab-dialect" }, "Dialect"), dialect),
        h("div", { class: "field" }, h("label", { for: "crontab-user" }, "User (for a user crontab)"), user),
      ),
      h("div", { class: "form-actions" }, h("button", { type: "submit", id: "crontab-preview" }, "Preview"), applyButton),
    ),
    planBox,
  );
}
