// Nodes: cluster members with status, role, tags and which one leads.

import { ApiError, get } from "../api.js";
import { badge, chips, h, rerender, tableWrap } from "../dom.js";

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
    const [{ data: members }, leader] = await Promise.all([
      get("/members"),
      get("/leader").then(
        (r) => (r.data && r.data.Name) || "",
        (err) => {
          if (err instanceof ApiError && (err.status === 404 || err.status === 503)) return "";
          throw err;
        },
      ),
    ]);
    if (!ctx.alive()) return;
    const list = Array.isArray(members) ? members : [];
    rerender(body, () =>
      h(
        "div",
        {},
        h("p", {}, `${list.length} member${list.length === 1 ? "" : "s"}; leader: `, h("strong", {}, leader || "none")),
        tableWrap(
          h(
            "table",
            { class: "data", id: "nodes-table" },
            h(
              "thead",
              {},
              h("tr", {}, ["Name", "Address", "Status", "Role", "Tags"].map((t) => h("th", { scope: "col" }, t))),
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
