// Busy: every execution running in the cluster, with its output so far and a stop button.

import { api, getPage, jobPath } from "../api.js";
import { badge, h, rerender, tableWrap, toast } from "../dom.js";
import { executionDuration, formatDuration, formatTime } from "../format.js";

export async function renderBusy(ctx) {
  ctx.setTitle("Busy");
  const body = h("div", { id: "busy" });
  ctx.main.append(
    h("h1", {}, "Running now"),
    h("p", { class: "muted" }, "Updates every second."),
    body,
  );

  const stop = async (exec) => {
    try {
      await api("DELETE", `${jobPath(exec.job_name)}/executions/${encodeURIComponent(exec.id)}`);
      toast(`Stopping ${exec.job_name}.`);
    } catch (err) {
      toast(`Stop: ${err.message}`, "error");
    }
    await draw();
  };

  const draw = async () => {
    const { items } = await getPage("/busy");
    if (!ctx.alive()) return;
    rerender(body, () => {
      if (!items.length) return h("p", { class: "empty", id: "busy-empty" }, "Nothing is running.");
      return tableWrap(
        h(
          "table",
          { class: "data cards-on-phone", id: "busy-table" },
          h("thead", {}, h("tr", {}, ["Job", "Node", "Started", "Running for", "Output so far", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            items.map((e) =>
              h(
                "tr",
                { dataset: { exec: e.id, job: e.job_name } },
                h("td", { "data-label": "Job" }, h("a", { href: `#${jobPath(e.job_name)}` }, e.job_name), " ", badge("running", "running")),
                h("td", { "data-label": "Node" }, e.node_name || "—"),
                h("td", { "data-label": "Started" }, formatTime(e.started_at)),
                h("td", { "data-label": "Running for" }, formatDuration(executionDuration(e))),
                h("td", { "data-label": "Output", class: "output-cell" }, h("pre", { class: "output" }, (e.output || "").slice(-2000) || "(no output yet)")),
                h(
                  "td",
                  {},
                  h("button", { type: "button", class: "danger small", dataset: { focusKey: `stop-${e.id}` }, "aria-label": `Stop ${e.job_name}`, onclick: () => stop(e) }, "Stop"),
                ),
              ),
            ),
          ),
        ),
        "Running executions",
      );
    });
  };
  await draw();
  ctx.every(1000, draw);
}
