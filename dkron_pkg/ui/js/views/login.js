// Login form shown whenever the API answers 401: the token stays in this tab's sessionStorage.

import { api, AuthRequired, setToken } from "../api.js";
import { clear, h } from "../dom.js";

export function renderLogin(main, err, onSuccess) {
  clear(main);
  document.title = "Log in · Dkron";
  const input = h("input", {
    id: "login-token",
    name: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "aria-describedby": "login-help login-error",
  });
  const message = h("p", { id: "login-error", class: "field-error", role: "alert" });
  if (err && err.message && err.message !== new AuthRequired().message) {
    message.textContent = err.message;
  }
  const form = h(
    "form",
    { class: "card login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("p", { id: "login-help" }, "This Dkron server needs an API token."),
    h("label", { for: "login-token" }, "API token"),
    input,
    message,
    h("button", { type: "submit", class: "primary" }, "Log in"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    try {
      await api("GET", "/");
      onSuccess();
    } catch (error) {
      setToken("");
      message.textContent =
        error instanceof AuthRequired ? "The server refused this token." : error.message;
      input.focus();
    }
  });
  main.append(form);
  input.focus();
}
