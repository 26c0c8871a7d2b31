// Key/value rows editor for a job's string maps (executor_config, tags, metadata).

import { h } from "../dom.js";

/**
 * kvEditor("tags", "Target tags", onChange) -> {el, read, write, contains, keyInput, firstInput}.
 * read() returns a plain object (empty rows skipped); the error slot is #err-<field>.
 */
export function kvEditor(field, label, onChange) {
  const rows = h("div", { class: "kv-rows", id: `kv-${field}` });
  let seq = 0;

  function addRow(key = "", value = "") {
    const n = ++seq;
    const keyInput = h("input", {
      class: "kv-key",
      value: key,
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": `${label} key ${n}`,
      dataset: { kvKey: "" },
    });
    const valueInput = h("input", {
      class: "kv-value",
      value,
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": `${label} value ${n}`,
    });
    const row = h(
      "div",
      { class: "kv-row" },
      keyInput,
      valueInput,
      h(
        "button",
        {
          type: "button",
          class: "small",
          "aria-label": `Remove ${label} row ${n}`,
          onclick: () => {
            row.remove();
            onChange();
            const next = rows.querySelector("input") || addButton;
            next.focus();
          },
        },
        "Remove",
      ),
    );
    rows.append(row);
    return keyInput;
  }

  const addButton = h(
    "button",
    {
      type: "button",
      class: "small",
      id: `add-${field}`,
      onclick: () => {
        addRow().focus();
        onChange();
      },
    },
    `Add ${label.toLowerCase()} entry`,
  );

  const el = h(
    "div",
    { class: "field kv", id: `field-${field}`, role: "group", "aria-labelledby": `kv-label-${field}` },
    h("span", { class: "label", id: `kv-label-${field}` }, label),
    rows,
    addButton,
    h("p", { class: "field-error", id: `err-${field}`, role: "alert" }),
  );

  return {
    el,
    read() {
      const out = {};
      for (const row of rows.querySelectorAll(".kv-row")) {
        const key = row.querySelector(".kv-key").value.trim();
        if (key) out[key] = row.querySelector(".kv-value").value;
      }
      return out;
    },
    write(map) {
      const focused = rows.contains(document.activeElement);
      if (focused) return; // never rebuild rows under the user's cursor
      rows.replaceChildren();
      for (const [k, v] of Object.entries(map || {})) {
        addRow(k, typeof v === "string" ? v : JSON.stringify(v));
      }
    },
    contains(node) {
      return el.contains(node);
    },
    keyInput(key) {
      for (const input of rows.querySelectorAll(".kv-key")) {
        if (input.value.trim() === key) return input.parentElement.querySelector(".kv-value");
      }
      return null;
    },
    firstInput() {
      return rows.querySelector("input") || addButton;
    },
  };
}
