// Nodes: cluster members with status, role, Raft membership, tags and which one leads; above
// them, the misconfigurations this server has noticed (from /health's "problems").

import { ApiError, get, getToken } from "../api.js";
import { badge, chips, h, rerender, tableWrap } from "../dom.js";

const HEALTH_URL = new URL("../health", window.location.href);

/** This server's problems ({kind, message}); none when /health cannot be read. */
async function problems() {
  try {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`; // the details need it, when one is set
    const response = await fetch(HEALTH_URL, { headers });
    const body = response.ok ? await response.json() : {};
    return Array.isArray(body.problems) ? body.problems : [];
  } catch {
    return [];
  }
}

/** {name: "voter" | "non-voter"} from /raft/peers (empty when the API has none). */
async function raftRoles() {
  try {
    const { data } = await get("/raft/peers");
    const roles = {};
    for (const peer of Array.isArray(data) ? data : []) roles[peer.id] = peer.voter ? "voter" : "non-voter";
    return roles;
  } catch (err) {
    if (err instanceof ApiError) return {};
    throw err;
  }
}

function problemList(found) {
  if (!found.length) return null;
  return h(
    "section",
    { class: "problems", id: "problems", role: "region", "aria-label": "Problems" },
    h("h2", {}, `Problems (${found.length})`),
    h(
      "ul",
      {},
      found.map((p) => h("li", { dataset: { kind: p.kind } }, badge(p.kind, "problem"), " ", p.message)),
    ),
  );
}

const STATUS_NAMES = ["none", "alive", "leaving", "left", "failed"];

/** Serf's member status as a word: the API sends `statusText` and/or the integer `Status`. */
export function memberStatus(member) {
  if (member.statusText) return member.statusText;
  return STATUS_NAMES[member.Status] || String(member.Status ?? "unknown");
}

export async function renderNodes(ctx) {
  ctx.setTitle("Nodes");
  const body = h("div");
  ctx.main.append(h("h1", {}, "Nodes"), body);
  const draw = async () => {
    const [{ data: members }, leader, found, roles] = await Promise.all([
      get("/members"),
      get("/leader").then(
        (r) => (r.data && r.data.Name) || "",
        (err) => {
          if (err instanceof ApiError && (err.status === 404 || err.status === 503)) return "";
          throw err;
        },
      ),
      problems(),
      raftRoles(),
    ]);
    if (!ctx.alive()) return;
    const list = Array.isArray(members) ? members : [];
    rerender(body, () =>
      h(
        "div",
        {},
        problemList(found),
        h("p", {}, `${list.length} member${list.length === 1 ? "" : "s"}; leader: `, h("strong", {}, leader || "none")),
        tableWrap(
          h(
            "table",
            { class: "data", id: "nodes-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Name", "Address", "Status", "Role", "Raft", "Tags"].map((t) => h("th", { scope: "col" }, t)),
              ),
            ),
            h(
              "tbody",
              {},
              list.map((m) => {
                const status = memberStatus(m);
                const tags = m.Tags || {};
                return h(
                  "tr",
                  { dataset: { node: m.Name } },
                  h("td", { "data-label": "Name" }, m.Name, m.Name === leader ? [" ", badge("leader", "leader")] : null),
                  h("td", { "data-label": "Address" }, `${m.Addr || ""}${m.Port ? `:${m.Port}` : ""}`),
                  h("td", { "data-label": "Status" }, badge(status, status)),
                  h("td", { "data-label": "Role" }, tags.server === "true" ? "server" : "agent"),
                  h("td", { "data-label": "Raft" }, roles[m.Name] || (tags.server === "true" ? "not a member" : "—")),
                  h("td", { "data-label": "Tags" }, chips(tags)),
                );
              }),
            ),
          ),
          "Cluster members",
        ),
      ),
    );
  };
  await draw();
  ctx.every(3000, draw);
}
