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

export async function renderCrontab(ctx) {
  ctx.setTitle("Crontab import");
  const text = h("textarea", { id: "crontab-text", rows: "12", spellcheck: "false", class: "json-editor", placeholder: "# m h dom mon dow command\n*/5 * * * * /usr/local/bin/backup" });
  const file = h("input", { id: "crontab-file", type: "file", accept: "text/*,.crontab,*" });
  const dialect = h("select", { id: "crontab-dialect" }, h("option", { value: "debian" }, "Debian cron (one bad line rejects the file)"), h("option", { value: "cronie" }, "cronie (bad lines skipped)"));
  const user = h("input", { id: "crontab-user", autocomplete: "off", placeholder: "empty = system crontab with a user field" });
  const planBox = h("div", { id: "crontab-plan", "aria-live": "polite" });
  const applyButton = h("button", { type: "button", class: "primary", id: "crontab-apply", disabled: true }, "Apply");
  let previewed = "";

  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    text.value = await f.text();
    previewed = "";
    applyButton.disabled = true;
  });
  text.addEventListener("input", () => {
    applyButton.disabled = text.value !== previewed;
  });

  const query = () => ({ dialect: dialect.value, user: user.value.trim() });
  async function call(action) {
    try {
      const { data } = await api("POST", `/crontab/${action}`, {
        query: query(),
        body: text.value,
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
      h("div", { class: "field" }, h("label", { for: "crontab-text" }, "Crontab"), text),
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
