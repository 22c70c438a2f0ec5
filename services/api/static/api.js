// The gateway's HTTP API: bearer token from localStorage, JSON in and out, problem+json errors
// turned into ApiError (one line: what went wrong, then the hint saying what to do next).

const TOKEN_KEY = "lq.token";

/** The API token the user entered (kept in this browser only), or "". */
export function getToken() {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answered by the API (application/problem+json) or a network failure. */
export class ApiError extends Error {
  constructor({ status = 0, code = "network", detail = "", hint = "", requestId = "" }) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.hint = hint;
    this.requestId = requestId;
  }
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") ?? "";
  let body = {};
  if (type.includes("json")) {
    try {
      body = await response.json();
    } catch {
      body = {};
    }
  }
  return new ApiError({
    status: response.status,
    code: body.code ?? `http_${response.status}`,
    detail: body.detail ?? body.title ?? response.statusText,
    hint: body.hint ?? "",
    requestId: body.request_id ?? response.headers.get("X-Request-Id") ?? "",
  });
}

/** Calls the API; resolves to the parsed JSON body (or null), rejects with ApiError. */
export async function api(method, path, body = undefined, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError({
      detail: `cannot reach the API (${err.message})`,
      hint: "Check that the gateway is running and reachable from this browser.",
    });
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A list answer as an array, whether the API wraps it ({items: [...]}) or not. */
export function itemsOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of ["items", ...keys]) {
    if (body && Array.isArray(body[key])) return body[key];
  }
  return [];
}
