// Formatting of the API's times, durations and states for people.

export const ZERO_TIME = "0001-01-01T00:00:00Z";

export function isZeroTime(value) {
  return !value || value.startsWith("0001-01-01");
}

export const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const formatters = new Map();
function formatterFor(zone) {
  if (!formatters.has(zone)) {
    // sv-SE prints ISO-like "2024-03-01 12:00:05", which sorts and reads the same everywhere.
    formatters.set(
      zone,
      new Intl.DateTimeFormat("sv-SE", {
        timeZone: zone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hour12: false,
      }),
    );
  }
  return formatters.get(zone);
}

/** "2024-03-01 12:00:05" in `zone` (the viewer's by default); "—" for null or zero time. */
export function formatTime(value, zone) {
  if (isZeroTime(value)) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  try {
    return formatterFor(zone || viewerZone()).format(date);
  } catch {
    return formatterFor("UTC").format(date) + " UTC";
  }
}

/** Human duration such as "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function isRunning(execution) {
  return isZeroTime(execution.finished_at);
}

/** Milliseconds an execution took, or has been running so far. */
export function executionDuration(execution, now = Date.now()) {
  const start = Date.parse(execution.started_at);
  if (Number.isNaN(start)) return null;
  const end = isRunning(execution) ? now : Date.parse(execution.finished_at);
  return end - start;
}

export function executionState(execution) {
  if (isRunning(execution)) return "running";
  return execution.success ? "success" : "failed";
}

/** The job's state word as the API reports it ("" means it never ran). */
export function jobState(job) {
  return job.status || "untriggered";
}

export const STATUS_LABELS = {
  success: "success",
  failed: "failed",
  partially_failed: "partially failed",
  untriggered: "never run",
  running: "running",
};
