// The live event stream (GET /v1/events) over fetch, so the bearer token goes in a header
// (EventSource cannot send headers); resumes with Last-Event-ID like EventSource does.
import { authHeaders, reportUnauthorized } from "./client";
import type { LqEvent } from "./types";

const MIN_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;
// The gateway sends a comment every 15 s: silence for longer means a dead connection.
const STALL_MS = 40_000;

export interface SseMessage {
  id: string;
  event: string;
  data: string;
}

/** Parses text/event-stream chunks into messages (the WHATWG algorithm, any chunking). */
export class SseParser {
  private buffer = "";
  private skipLF = false;
  private event = "";
  private data: string[] = [];
  lastId = "";
  retryMs: number | null = null;

  constructor(private readonly onMessage: (message: SseMessage) => void) {}

  feed(chunk: string): void {
    if (!chunk) return;
    let text = chunk;
    // A chunk may end between the \r and \n of one line ending: skip that \n when it comes.
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() ?? "";
    if (this.buffer === "" && text.endsWith("\r")) this.skipLF = true;
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length) {
        this.onMessage({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }
}

export type StreamState = "connecting" | "open" | "reconnecting" | "unauthorized" | "closed";

export interface EventStreamOptions {
  /** Query string without "?", e.g. "vm=web-1&since=3600". */
  query?: string;
  onEvent: (event: LqEvent) => void;
  onState?: (state: StreamState) => void;
  /** Called each time the stream (re)opens: the place to re-read lists after a gap. */
  onOpen?: (reconnected: boolean) => void;
}

/** A reconnecting stream of events; `stop()` ends it for good. */
export class EventStream {
  private lastId = "";
  private stopped = false;
  private failures = 0;
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;
  private lastByteAt = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private opened = false;
  private readonly onOffline = () => this.abort?.abort();
  private readonly onOnline = () => this.wake?.();

  constructor(private readonly options: EventStreamOptions) {}

  start(): void {
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.watchdog = setInterval(() => {
      if (this.lastByteAt && Date.now() - this.lastByteAt > STALL_MS) this.abort?.abort();
    }, 5000);
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    clearInterval(this.watchdog);
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    this.wake?.();
    this.options.onState?.("closed");
  }

  private setState(state: StreamState): void {
    this.options.onState?.(state);
  }

  private async loop(): Promise<void> {
    let serverRetry: number | null = null;
    while (!this.stopped) {
      this.setState(this.opened ? "reconnecting" : "connecting");
      try {
        serverRetry = await this.once();
        this.failures = 0;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof Unauthorized) {
          this.setState("unauthorized");
          reportUnauthorized();
          return; // the app starts a new stream after a new sign-in
        }
        this.failures += 1;
      }
      if (this.stopped) return;
      this.setState("reconnecting");
      const base = Math.max(MIN_RETRY_MS, serverRetry ?? MIN_RETRY_MS);
      const delay = Math.min(MAX_RETRY_MS, base * 2 ** Math.min(Math.max(this.failures - 1, 0), 5));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, navigator.onLine ? delay : MAX_RETRY_MS * 4);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** One connection until it ends; returns the server's retry advice. */
  private async once(): Promise<number | null> {
    this.abort = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const query = this.options.query ? `?${this.options.query}` : "";
    const response = await fetch(`/v1/events${query}`, { headers, signal: this.abort.signal, cache: "no-store" });
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
    const parser = new SseParser((message) => this.dispatch(message));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const reconnected = this.opened;
    this.opened = true;
    this.lastByteAt = Date.now();
    this.setState("open");
    this.options.onOpen?.(reconnected);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      this.lastByteAt = Date.now();
      parser.feed(value);
    }
    this.lastByteAt = 0;
    return parser.retryMs;
  }

  private dispatch(message: SseMessage): void {
    if (message.id) this.lastId = message.id;
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(message.data) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = message.event !== "message" ? message.event : String(payload.type ?? "message");
    this.options.onEvent({ ...payload, id: message.id, type } as LqEvent);
  }
}

class Unauthorized extends Error {}
