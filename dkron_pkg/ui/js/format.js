// Formatting of the API's times, durations and states for people.

export const ZERO_TIME = "0001-01-01T00:00:00Z";

export function isZeroTime(value) {
  return !value || (typeof value === "string" && value.startsWith("0001-01-01"));
}

export const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// One setting for every time the UI shows: the viewer's zone (default) or UTC. Kept in
// localStorage only once changed, so a viewer who never touches it leaves nothing behind.
const ZONE_KEY = "dkron.times";

/** "local" or "utc": where the viewer wants times shown. */
export function timesMode() {
  try {
    return window.localStorage.getItem(ZONE_KEY) === "utc" ? "utc" : "local";
  } catch {
    return "local";
  }
}

export function setTimesMode(mode) {
  try {
    if (mode === "utc") window.localStorage.setItem(ZONE_KEY, "utc");
    else window.localStorage.removeItem(ZONE_KEY);
  } catch {
    // Storage refused (private mode): the choice lasts until the page reloads.
  }
}

/** The IANA zone every time on the page is shown in. */
export const displayZone = () => (timesMode() === "utc" ? "UTC" : viewerZone());

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

const labelFormatters = new Map();
/** A short zone label for `date` in `zone`: "UTC", "EST"/"EDT", or "GMT+9" where none exists. */
export function zoneLabel(zone, date = new Date()) {
  if (zone === "UTC" || zone === "Etc/UTC") return "UTC";
  try {
    if (!labelFormatters.has(zone)) {
      labelFormatters.set(zone, new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "short" }));
    }
    const part = labelFormatters.get(zone).formatToParts(date).find((p) => p.type === "timeZoneName");
    return part ? part.value : zone;
  } catch {
    return zone;
  }
}

/**
 * "2024-03-01 12:00:05 EST" in `zone` (the display zone by default), always with its zone
 * label so no time on the page is ambiguous; "—" for null or zero time.
 */
export function formatTime(value, zone) {
  if (isZeroTime(value)) return "—";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const where = zone || displayZone();
  try {
    return `${formatterFor(where).format(date)} ${zoneLabel(where, date)}`;
  } catch {
    return `${formatterFor("UTC").format(date)} UTC`;
  }
}

/** "13:00" (clock), "13:00:05" (with seconds) and "03-01 13:00" (short) in `zone`, for axes. */
export function formatClock(date, zone, seconds = false) {
  return formatterFor(zone).format(date).slice(11, seconds ? 19 : 16);
}

export function formatShort(date, zone) {
  return formatterFor(zone).format(date).slice(5, 16);
}

/** Minutes east of UTC that `zone` is at `date` (e.g. -300 for New York in winter). */
export function zoneOffsetMinutes(zone, date) {
  const text = formatterFor(zone).format(date); // "2024-03-01 07:00:05"
  const [d, t] = text.split(" ");
  const [y, mo, da] = d.split("-").map(Number);
  const [hh, mi, ss] = t.split(":").map(Number);
  const asUtc = Date.UTC(y, mo - 1, da, hh % 24, mi, ss);
  return Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
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

/**
 * Why a finished run failed, in one line the executions table shows without opening the
 * output: the error line (a failed run's output starts with it, e.g. "exit status 3") and the
 * last line the command printed, when they differ. "" for runs that did not fail.
 */
export function failureSummary(execution, maxChars = 300) {
  if (isRunning(execution) || execution.success) return "";
  const lines = String(execution.output || "")
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  if (!lines.length) return "failed without output";
  // A list cut to the output's tail has lost the first line: only the last one is known.
  const first = execution.output_truncated ? "" : lines[0];
  const last = lines[lines.length - 1];
  const text = !first || first === last ? last : `${first} — ${last}`;
  return text.length > maxChars ? `${text.slice(0, maxChars - 1)}…` : text;
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
