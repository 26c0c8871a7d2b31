// Next fire times of a schedule, from the server's preview endpoint, in two time zones.

import { api, AuthRequired } from "../api.js";
import { append, clear, h, tableWrap } from "../dom.js";
import { displayZone, formatTime, timesMode } from "../format.js";

/** Ask the server for the next `count` fire times. Returns {description, next} or throws. */
export async function fetchPreview({ schedule, timezone, name }, count = 5) {
  const { data } = await api("GET", "/schedule/preview", {
    query: { schedule, timezone, name, count },
  });
  return { description: (data && data.description) || "", next: (data && data.next) || [] };
}

/**
 * Draw the preview of `job` into `box`. Returns null when fine, or the server's message when
 * the schedule is rejected (the form shows it next to the field), undefined when a newer call
 * superseded this one.
 */
export async function renderPreview(box, job) {
  // Answers can arrive out of order while someone types: only the latest request may draw.
  const seq = String(Number(box.dataset.seq || 0) + 1);
  box.dataset.seq = seq;
  if (!job.schedule) {
    clear(box);
    box.append(
      h("p", { class: "muted" }, job.parent_job ? `Runs after ${job.parent_job} succeeds.` : "No schedule."),
    );
    return null;
  }
  if (!box.firstChild) box.append(h("p", { class: "muted" }, "Computing…"));
  let preview;
  try {
    preview = await fetchPreview(job);
  } catch (err) {
    if (err instanceof AuthRequired) throw err;
    if (box.dataset.seq !== seq) return undefined;
    clear(box);
    box.append(h("p", { class: "preview-error" }, err.message));
    return err.message;
  }
  if (box.dataset.seq !== seq) return undefined;
  clear(box);
  const jobZone = job.timezone || "";
  const mine = displayZone();
  const mineLabel = timesMode() === "utc" ? "UTC" : `Your time (${mine})`;
  const jobLabel = jobZone ? `Job zone (${jobZone})` : "UTC (the job has no zone: server local time)";
  append(box, [
    preview.description ? h("p", { class: "preview-description" }, preview.description) : null,
    job.disabled ? h("p", { class: "muted" }, "The job is disabled: these runs will not happen until it is enabled.") : null,
    preview.next.length
      ? tableWrap(
          h(
            "table",
            { class: "data compact preview-table" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, jobLabel), h("th", { scope: "col" }, mineLabel))),
            h(
              "tbody",
              {},
              preview.next.map((t) =>
                h("tr", {}, h("td", {}, formatTime(t, jobZone || "UTC")), h("td", {}, formatTime(t, mine))),
              ),
            ),
          ),
          "Next fire times",
        )
      : h("p", { class: "muted" }, "No future runs."),
  ]);
  return null;
}
