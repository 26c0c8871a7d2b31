// Inline SVG charts drawn by hand (no chart library, no build step): a job's run history and
// the cluster's runs per hour. Every mark carries a <title> and an aria-label saying what it is.

import { s } from "./dom.js";
import {
  executionDuration,
  executionState,
  formatClock,
  formatDuration,
  formatShort,
  formatTime,
  zoneLabel,
  zoneOffsetMinutes,
} from "./format.js";

const HOUR = 3600 * 1000;
export const HISTORY_RUNS = 100;
const STATE_WORDS = { success: "succeeded", failed: "failed", running: "running" };

/** A "nice" step (1, 2 or 5 times a power of ten) so about `count` steps cover `max`. */
function niceStep(max, count) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/** Linear ticks from 0 to the first one at or above `max`: [0, step, 2*step, ...]. */
function ticksUpTo(max, count, minStep = 1) {
  const step = Math.max(niceStep(Math.max(max, minStep), count), minStep);
  const ticks = [0];
  while (ticks[ticks.length - 1] < max) ticks.push(ticks.length * step);
  return ticks;
}

/** The frame both charts share: plot area, y grid lines with labels, axis titles. */
function frame(width, height, margin, yTicks, yMax, yLabel, xTitle) {
  const plot = {
    left: margin.left,
    right: width - margin.right,
    top: margin.top,
    bottom: height - margin.bottom,
  };
  const y = (v) => plot.bottom - (v / yMax) * (plot.bottom - plot.top);
  const grid = s(
    "g",
    { class: "chart-grid", "aria-hidden": "true" },
    yTicks.map((v) => [
      s("line", { x1: plot.left, x2: plot.right, y1: y(v), y2: y(v) }),
      s("text", { x: plot.left - 6, y: y(v) + 4, "text-anchor": "end" }, yLabel(v)),
    ]),
    s("text", { class: "axis-title", x: (plot.left + plot.right) / 2, y: height - 4, "text-anchor": "middle" }, xTitle),
  );
  return { plot, y, grid };
}

function chartRoot(width, height, id, label, children) {
  return s(
    "svg",
    {
      id,
      class: "chart",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "group",
      "aria-label": label,
    },
    s("title", {}, label),
    children,
  );
}

/** A mark's shape by outcome, so colour is never the only difference: ● ◆ ○. */
function markShape(state, cx, cy) {
  if (state === "failed") {
    const r = 6;
    return s("path", { class: "mark-shape", d: `M${cx} ${cy - r}L${cx + r} ${cy}L${cx} ${cy + r}L${cx - r} ${cy}Z` });
  }
  return s("circle", { class: "mark-shape", cx, cy, r: 5 });
}

/**
 * A job's last 100 runs: each a mark at (start time, duration), coloured and shaped by
 * outcome. `onPick(execution)` is called when a mark is clicked.
 */
export function runHistoryChart(executions, { width, zone, now = Date.now(), onPick }) {
  const runs = executions
    .filter((e) => !Number.isNaN(Date.parse(e.started_at)))
    .sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at))
    .slice(0, HISTORY_RUNS)
    .reverse();
  const height = 220;
  const durations = runs.map((e) => Math.max(0, executionDuration(e, now) || 0));
  const starts = runs.map((e) => Date.parse(e.started_at));
  let t0 = Math.min(...starts);
  let t1 = Math.max(...starts);
  const pad = Math.max((t1 - t0) * 0.04, 30 * 1000);
  t0 -= pad;
  t1 += pad;
  const yTicks = ticksUpTo(Math.max(...durations, 1), 4);
  const yMax = yTicks[yTicks.length - 1];
  const { plot, y, grid } = frame(width, height, { left: 70, right: 16, top: 12, bottom: 42 }, yTicks, yMax, formatDuration, `Started (${zoneLabel(zone)})`);
  const x = (t) => plot.left + ((t - t0) / (t1 - t0)) * (plot.right - plot.left);
  // Axis labels as fine as the span needs: dates over a day, seconds within minutes.
  const span = t1 - t0;
  const tickText = (t) =>
    span > 20 * HOUR ? formatShort(new Date(t), zone) : formatClock(new Date(t), zone, span < 15 * 60 * 1000);
  const xTicks = Array.from({ length: width < 480 ? 3 : 5 }, (_, i) => t0 + ((i + 0.5) * (t1 - t0)) / (width < 480 ? 3 : 5));
  const xAxis = s(
    "g",
    { class: "chart-grid", "aria-hidden": "true" },
    xTicks.map((t) =>
      s("text", { x: x(t), y: plot.bottom + 16, "text-anchor": "middle" }, tickText(t)),
    ),
    s("line", { class: "axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }),
  );
  const counts = { success: 0, failed: 0, running: 0 };
  const marks = runs.map((e, i) => {
    const state = executionState(e);
    counts[state] += 1;
    const text = `${STATE_WORDS[state]}: started ${formatTime(e.started_at, zone)}, ${state === "running" ? "running for" : "took"} ${formatDuration(durations[i])}${e.attempt > 1 ? `, attempt ${e.attempt}` : ""}${e.node_name ? `, on ${e.node_name}` : ""}`;
    return s(
      "g",
      {
        class: `mark mark-${state}`,
        role: "img",
        "aria-label": text,
        dataset: { exec: e.id, state },
        onclick: onPick ? () => onPick(e) : null,
      },
      s("title", {}, text),
      markShape(state, x(starts[i]), y(durations[i])),
    );
  });
  const label = `Run history of the last ${runs.length} run${runs.length === 1 ? "" : "s"}: ${counts.success} succeeded, ${counts.failed} failed${counts.running ? `, ${counts.running} running` : ""}. Time across, duration up.`;
  return chartRoot(width, height, "history-chart", label, [grid, xAxis, s("g", { class: "marks" }, marks)]);
}

/**
 * The 24 clock hours (in `zone`) ending with the current one, each with the runs that started
 * in it: [{start, end, succeeded, failed}]. Runs still going are not counted.
 */
export function runsPerHour(executions, now, zone) {
  const nowDate = new Date(now);
  const offset = zoneOffsetMinutes(zone, nowDate) * 60000;
  const thisHour = Math.floor((now + offset) / HOUR) * HOUR - offset;
  const first = thisHour - 23 * HOUR;
  const buckets = Array.from({ length: 24 }, (_, i) => ({
    start: first + i * HOUR,
    end: first + (i + 1) * HOUR,
    succeeded: 0,
    failed: 0,
  }));
  for (const e of executions) {
    const state = executionState(e);
    if (state === "running") continue;
    const i = Math.floor((Date.parse(e.started_at) - first) / HOUR);
    if (i < 0 || i > 23 || Number.isNaN(i)) continue;
    buckets[i][state === "success" ? "succeeded" : "failed"] += 1;
  }
  return buckets;
}

/** Words for one hour's bar: "13:00–14:00 EST: 4 succeeded, 1 failed". */
export function hourText(bucket, zone) {
  const from = new Date(bucket.start);
  return `${formatClock(from, zone)}–${formatClock(new Date(bucket.end), zone)} ${zoneLabel(zone, from)}: ${bucket.succeeded} succeeded, ${bucket.failed} failed`;
}

/** Runs per hour over 24 hours as stacked bars: succeeded below, failed on top. */
export function hourlyRunsChart(buckets, { width, zone }) {
  const height = 200;
  const most = Math.max(...buckets.map((b) => b.succeeded + b.failed), 1);
  const yTicks = ticksUpTo(most, 4);
  const yMax = yTicks[yTicks.length - 1];
  const { plot, y, grid } = frame(width, height, { left: 44, right: 12, top: 12, bottom: 42 }, yTicks, yMax, String, `Hour (${zoneLabel(zone)})`);
  const slot = (plot.right - plot.left) / buckets.length;
  const barWidth = Math.max(2, slot * 0.7);
  const labelEvery = width < 480 ? 6 : 3;
  const bars = buckets.map((b, i) => {
    const x0 = plot.left + i * slot + (slot - barWidth) / 2;
    const text = hourText(b, zone);
    const okTop = y(b.succeeded);
    const failTop = y(b.succeeded + b.failed);
    return s(
      "g",
      {
        class: "hour",
        role: "img",
        "aria-label": text,
        dataset: { hour: formatClock(new Date(b.start), zone), succeeded: b.succeeded, failed: b.failed },
      },
      s("title", {}, text),
      // A full-height strip so the title shows on hover even over an empty hour.
      s("rect", { class: "hour-hit", x: plot.left + i * slot, y: plot.top, width: slot, height: plot.bottom - plot.top }),
      b.succeeded ? s("rect", { class: "bar-success", x: x0, y: okTop, width: barWidth, height: plot.bottom - okTop }) : null,
      b.failed ? s("rect", { class: "bar-failed", x: x0, y: failTop, width: barWidth, height: okTop - failTop }) : null,
      i % labelEvery === 0 || i === buckets.length - 1
        ? s("text", { class: "tick", x: x0 + barWidth / 2, y: plot.bottom + 16, "text-anchor": "middle", "aria-hidden": "true" }, formatClock(new Date(b.start), zone))
        : null,
    );
  });
  const ok = buckets.reduce((n, b) => n + b.succeeded, 0);
  const bad = buckets.reduce((n, b) => n + b.failed, 0);
  const label = `Runs per hour over the last 24 hours: ${ok} succeeded, ${bad} failed.`;
  return chartRoot(width, height, "runs-per-hour", label, [
    grid,
    s("line", { class: "axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, "aria-hidden": "true" }),
    s("g", { class: "bars" }, bars),
  ]);
}
