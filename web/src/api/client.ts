// Calls to the gateway's /v1 API with the bearer token; errors become ProblemError (one line).

const TOKEN_KEY = "lq.token"; // shared with the console page (/v1/vms/{vm}/console)

export function getToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An RFC 9457 problem answer; `line` is what the UI shows: code, detail, then the hint. */
export class ProblemError extends Error {
  readonly status: number;
  readonly code: string;
  readonly hint: string;
  readonly requestId: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>) {
    const detail = String(body.detail ?? body.title ?? `HTTP ${status}`);
    super(detail);
    this.name = "ProblemError";
    this.status = status;
    this.code = String(body.code ?? `http_${status}`);
    this.hint = String(body.hint ?? "");
    this.requestId = String(body.request_id ?? "");
    this.body = body;
  }

  get line(): string {
    return this.hint ? `${this.code}: ${this.message} — ${this.hint}` : `${this.code}: ${this.message}`;
  }
}

/** The one-line text of any error (problems keep their code and hint). */
export function errorLine(err: unknown): string {
  if (err instanceof ProblemError) return err.line;
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}

type UnauthorizedListener = () => void;
const unauthorizedListeners = new Set<UnauthorizedListener>();

/** Called on every 401, wherever it happens (the app reopens its sign-in). */
export function onUnauthorized(listener: UnauthorizedListener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function reportUnauthorized(): void {
  for (const listener of unauthorizedListeners) listener();
}

export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { Accept: "application/json", Authorization: `Bearer ${getToken()}`, ...extra };
}

async function problemOf(response: Response): Promise<ProblemError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    body = { detail: response.statusText || `HTTP ${response.status}` };
  }
  return new ProblemError(response.status, body);
}

export interface RequestOptions {
  body?: unknown; // sent as JSON
  rawBody?: Blob; // sent as it is (application/octet-stream)
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A fetch to the API; throws ProblemError on a non-2xx answer (and announces a 401). */
export async function request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers = authHeaders(options.headers);
  let body: BodyInit | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  } else if (options.rawBody !== undefined) {
    headers["Content-Type"] = "application/octet-stream";
    body = options.rawBody;
  }
  const response = await fetch(path, { method, headers, body, signal: options.signal, cache: "no-store" });
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401) reportUnauthorized();
    throw problem;
  }
  return response;
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await (await request("GET", path, { signal })).json()) as T;
}

export async function sendJson<T>(method: string, path: string, body?: unknown,
                                  headers?: Record<string, string>): Promise<T> {
  const response = await request(method, path, { body, headers });
  return (await response.json()) as T;
}

/** A path segment (VM or image names and ids) made safe for a URL. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
