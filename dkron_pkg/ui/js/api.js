// Thin client for the Dkron REST API: token handling, error shapes, JSON decoding.

const TOKEN_KEY = "dkron.token";

// The UI lives at /ui/, the API at /v1: resolve relative to the page so a proxy prefix works.
export const API_BASE = new URL("../v1", window.location.href).pathname.replace(/\/$/, "");

/** An API answer that is not 2xx; `field` names the job field the server blamed, if any. */
export class ApiError extends Error {
  constructor(status, message, field, body) {
    super(message);
    this.status = status;
    this.field = field || "";
    this.body = body; // decoded response body (e.g. a crontab plan with its errors)
  }
}

/** Raised on 401: the router shows the login form and retries the page afterwards. */
export class AuthRequired extends Error {
  constructor(message) {
    super(message || "This server needs an API token.");
    this.status = 401;
  }
}

export function getToken() {
  return window.sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

function buildUrl(path, query) {
  const url = new URL(API_BASE + path, window.location.href);
  if (query) {
    const params = query instanceof URLSearchParams ? query : new URLSearchParams();
    if (!(query instanceof URLSearchParams)) {
      for (const [k, v] of Object.entries(query)) {
        if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
      }
    }
    url.search = params.toString();
  }
  return url;
}

function decode(text, contentType) {
  if (!text) return null;
  if (contentType.includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/**
 * Call the API. Returns {data, headers, status}; throws ApiError or AuthRequired.
 * `body` objects are sent as JSON, strings as `bodyType` (the server refuses bodies of a type
 * an HTML form could send, so there is no plain-text default).
 */
export async function api(method, path, { query, body, bodyType } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (typeof body === "string") {
    headers["Content-Type"] = `${bodyType}; charset=utf-8`;
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(buildUrl(path, query), { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(0, `Cannot reach the server (${err.message}).`, "");
  }
  const text = await response.text();
  const contentType = response.headers.get("Content-Type") || "";
  if (response.status === 401) {
    throw new AuthRequired(token ? "The token was refused." : "");
  }
  if (!response.ok) {
    let message = text.trim();
    const decoded = decode(message, contentType);
    if (decoded && typeof decoded === "object") message = decoded.error || decoded.message || message;
    if (typeof decoded === "string" && contentType.includes("json")) message = decoded;
    throw new ApiError(
      response.status,
      message || `${response.status} ${response.statusText}`,
      response.headers.get("X-Error-Field"),
      decoded,
    );
  }
  return { data: decode(text, contentType), headers: response.headers, status: response.status };
}

export const get = (path, query) => api("GET", path, { query });

/** GET that also returns X-Total-Count as a number (falls back to the array length). */
export async function getPage(path, query) {
  const { data, headers } = await api("GET", path, { query });
  const items = Array.isArray(data) ? data : [];
  const header = headers.get("X-Total-Count");
  const total = header === null ? items.length : Number(header);
  return { items, total };
}

export const jobPath = (name) => `/jobs/${encodeURIComponent(name)}`;
