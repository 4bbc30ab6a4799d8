// Talking to /api/v1: JSON in and out, the bearer token when one was given, and the
// JSON content type the API demands of every request that changes something (CSRF).

const BASE = "/api/v1";
const TOKEN_KEY = "outrider.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** ``/api/v1`` + path segments, each percent-encoded (queue names contain "/"). */
export function path(...segments) {
  return `${BASE}/${segments.map((seg) => encodeURIComponent(String(seg))).join("/")}`;
}

/** Append the non-empty ``params`` as a query string. */
export function withQuery(url, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `${url}?${text}` : url;
}

async function request(method, url, { body, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, signal, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 300) };
    }
  }
  if (!response.ok || (data && data.ok === false)) {
    const message = (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, String(message));
  }
  return data;
}

export const get = (url, opts) => request("GET", url, opts);
export const post = (url, body) => request("POST", url, { body });
export const del = (url, body) => request("DELETE", url, { body });

/** The list in a reply, whether it is the reply itself or under ``key``. */
export function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  return [];
}

/** The object in a reply, whether it is the reply itself or under ``key``. */
export function objectOf(data, key) {
  if (data && typeof data === "object" && data[key] && typeof data[key] === "object"
      && !Array.isArray(data[key])) {
    return data[key];
  }
  return data || {};
}
