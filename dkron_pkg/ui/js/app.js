// Entry point: hash router (#/jobs/NAME), page life cycle, login on 401, node name in the bar.

import { AuthRequired, get, getToken, setToken } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { renderLogin } from "./views/login.js";
import { renderDashboard } from "./views/dashboard.js";
import { renderJobs } from "./views/jobs.js";
import { renderJob } from "./views/job.js";
import { renderJobForm } from "./views/form.js";
import { renderBusy } from "./views/busy.js";
import { renderNodes } from "./views/nodes.js";
import { renderCrontab } from "./views/crontab.js";
import { setTimesMode, timesMode, viewerZone } from "./format.js";

// #/jobs/NAME is always the job called NAME (even "new" or "create"): the new-job form lives
// at #/new, outside the jobs/ namespace, so no job name can collide with it.
const ROUTES = [
  { pattern: /^\/?$/, nav: "dashboard", view: renderDashboard },
  { pattern: /^\/jobs\/?$/, nav: "jobs", view: renderJobs },
  { pattern: /^\/new\/?$/, nav: "new", view: (ctx) => renderJobForm(ctx, null) },
  { pattern: /^\/jobs\/([^/]+)\/edit\/?$/, nav: "jobs", view: (ctx, n) => renderJobForm(ctx, n) },
  // The Dkron UI's links: #/jobs/NAME/show, and its executions tab (django-dkron's link).
  {
    pattern: /^\/jobs\/([^/]+)\/show(?:\/(executions|1))?\/?$/,
    nav: "jobs",
    view: (ctx, n, tab) => renderJob(ctx, n, { section: tab ? "executions" : "" }),
  },
  { pattern: /^\/jobs\/([^/]+)\/?$/, nav: "jobs", view: (ctx, n) => renderJob(ctx, n) },
  { pattern: /^\/busy$/, nav: "busy", view: renderBusy },
  { pattern: /^\/nodes$/, nav: "nodes", view: renderNodes },
  { pattern: /^\/crontab$/, nav: "crontab", view: renderCrontab },
];

const main = document.getElementById("main");
let cleanups = [];
let renderSeq = 0;

/** Parse "#/jobs?status=failed" into {path: "/jobs", query: URLSearchParams}. */
export function parseHash(hash = window.location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  return { path, query: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
}

/** A path part as text: "caf%C3%A9" -> "café"; a stray "%" is kept as typed, not an error. */
function decodePart(part) {
  if (part === undefined) return "";
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function stopPage() {
  for (const fn of cleanups) fn();
  cleanups = [];
}

/** A page context: where to draw, the query, and polling that stops when the page changes. */
function makeContext(query, seq) {
  const alive = () => seq === renderSeq;
  return {
    main,
    query,
    alive,
    navigate,
    onCleanup: (fn) => cleanups.push(fn),
    setTitle: (title) => {
      document.title = title ? `${title} · Dkron` : "Dkron";
    },
    /**
     * Run fn every ms while this page is shown and the tab is visible. A 401 shows the login
     * form; other failures (a restart, a blip) are left for the next tick to repair.
     */
    every(ms, fn) {
      let timer = null;
      const tick = async () => {
        if (!alive()) return;
        if (!document.hidden) {
          try {
            await fn();
          } catch (err) {
            if (err instanceof AuthRequired) return showLogin(err);
          }
        }
        if (alive()) timer = setTimeout(tick, ms);
      };
      timer = setTimeout(tick, ms);
      cleanups.push(() => clearTimeout(timer));
    },
  };
}

function markNav(nav) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showLogin(err) {
  stopPage();
  renderSeq += 1;
  markNav("");
  renderLogin(main, err, () => {
    refreshNodeInfo();
    route();
  });
}

async function route() {
  stopPage();
  const seq = ++renderSeq;
  const { path, query } = parseHash();
  let match = null;
  let found = null;
  for (const candidate of ROUTES) {
    match = path.match(candidate.pattern);
    if (match) {
      found = candidate;
      break;
    }
  }
  clear(main);
  markNav(found ? found.nav : "");
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the dashboard")));
    return;
  }
  main.setAttribute("aria-busy", "true");
  const ctx = makeContext(query, seq);
  try {
    const args = match.slice(1).map(decodePart);
    await found.view(ctx, ...args);
  } catch (err) {
    if (seq !== renderSeq) return;
    if (err instanceof AuthRequired) return showLogin(err);
    main.append(errorBox(err.message || String(err)));
  } finally {
    if (seq === renderSeq) main.removeAttribute("aria-busy");
  }
}

async function refreshNodeInfo() {
  const info = document.getElementById("node-info");
  document.getElementById("logout").hidden = !getToken();
  try {
    const { data } = await get("/");
    const agent = (data && data.agent) || {};
    info.textContent = agent.name ? `${agent.name}${agent.version ? ` · v${agent.version}` : ""}` : "";
  } catch {
    info.textContent = "";
  }
}

/** The "Times in" switch in the top bar: one setting for every time on every page. */
function setUpTimesSwitch() {
  const select = document.getElementById("times-mode");
  document.getElementById("times-local").textContent = `your zone (${viewerZone()})`;
  select.value = timesMode();
  select.addEventListener("change", () => {
    setTimesMode(select.value);
    route();
  });
}

document.getElementById("logout").addEventListener("click", () => {
  setToken("");
  refreshNodeInfo();
  route();
});

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});
document.getElementById("skip-link").addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});

setUpTimesSwitch();
refreshNodeInfo();
route();
