// Small DOM helpers: build elements without innerHTML (so job data can never inject markup).

/**
 * h("button", {class: "x", onclick: fn, dataset: {k: "v"}}, "text", childNode, [more])
 * Attributes set to false/null/undefined are skipped; `true` sets an empty attribute.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** The same as h() for SVG elements (inline charts): s("circle", {cx: 3, r: 2}, s("title", {}, "…")). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/**
 * Re-render `container`'s content with `build()` and give focus back to the element carrying
 * the same data-focus-key, so polling never steals the keyboard user's place.
 */
export function rerender(container, build) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  clear(container);
  append(container, [build()]);
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

let toastSeq = 0;
/** A short message in the status region (read by screen readers). kind: info | error. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const id = `toast-${++toastSeq}`;
  const item = h("div", { class: `toast toast-${kind}`, id }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** A labelled badge for a job or execution state. */
export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind || text}` }, text);
}

export function errorBox(message) {
  return h("div", { class: "error-box", role: "alert" }, message);
}

/** Wrap a table so it scrolls sideways on narrow screens instead of overflowing the page. */
export function tableWrap(table, label) {
  return h("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: "0" }, table);
}

export function chips(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return h(
    "span",
    { class: "chips" },
    entries.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)),
  );
}
