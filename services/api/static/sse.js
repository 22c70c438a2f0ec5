// The live event stream (GET /v1/events, text/event-stream) with the bearer token.
//
// Two transports:
// - "fetch" (default): fetch() with an Authorization header, the stream parsed here. Works with
//   any gateway that accepts the bearer header, and resumes with Last-Event-ID like EventSource.
// - "eventsource": the browser's EventSource, which cannot send headers, so the token travels as
//   ?access_token=... (only if the gateway accepts it there; tokens in URLs reach access logs).

const MIN_RETRY_MS = 500;
const MAX_RETRY_MS = 15000;
// The gateway sends a comment every 15 s; silence for longer means a dead connection (a
// half-open TCP stream never errors by itself).
const STALL_MS = 40000;

/** Parses text/event-stream chunks into {id, event, data} messages (the WHATWG algorithm). */
export class SseParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.skipLF = false;
    this.reset();
    this.lastId = "";
    this.retryMs = null;
  }

  reset() {
    this.event = "";
    this.data = [];
  }

  feed(text) {
    if (!text) return;
    // A chunk may end between the \r and \n of one line ending: skip that \n when it comes.
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // the unterminated rest
    if (this.buffer === "" && text.endsWith("\r")) this.skipLF = true;
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onMessage({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
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

/**
 * A reconnecting event stream. onEvent(type, payload, id) gets each event's parsed JSON;
 * onState(state, detail) gets "connecting" | "open" | "reconnecting" | "unauthorized".
 */
export class EventStream {
  constructor({ url, token, onEvent, onState, transport = "fetch", eventTypes = [] }) {
    Object.assign(this, { url, token, onEvent, onState, transport, eventTypes });
    this.lastId = "";
    this.stopped = true;
    this.failures = 0;
  }

  start() {
    this.stopped = false;
    if (this.transport === "eventsource") {
      this.startEventSource();
      return;
    }
    // Offline: drop the stream at once (it may hang rather than fail); online: retry now.
    this.onOffline = () => this.abort?.abort();
    this.onOnline = () => this.wake?.();
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.watchdog = setInterval(() => {
      if (this.lastByteAt && Date.now() - this.lastByteAt > STALL_MS) this.abort?.abort();
    }, 5000);
    this.loop();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
    this.source?.close();
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    this.wake?.();
  }

  dispatch(message) {
    if (message.id) this.lastId = message.id;
    let payload;
    try {
      payload = JSON.parse(message.data);
    } catch {
      return; // not ours (e.g. a plain keep-alive "data:" line)
    }
    const type = message.event !== "message" ? message.event : payload.type ?? "message";
    this.onEvent(type, payload, message.id);
  }

  backoffMs(serverRetry) {
    // The server's retry: after a clean end; doubled for each failure in a row after the first.
    const base = Math.max(MIN_RETRY_MS, serverRetry ?? MIN_RETRY_MS);
    return Math.min(MAX_RETRY_MS, base * 2 ** Math.min(Math.max(this.failures - 1, 0), 5));
  }

  async loop() {
    while (!this.stopped) {
      const parser = new SseParser((m) => this.dispatch(m));
      parser.lastId = this.lastId;
      this.onState(this.failures ? "reconnecting" : "connecting");
      this.abort = new AbortController();
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${this.token}` };
      if (this.lastId) headers["Last-Event-ID"] = this.lastId;
      try {
        const response = await fetch(this.url, { headers, signal: this.abort.signal, cache: "no-store" });
        if (response.status === 401 || response.status === 403) {
          this.onState("unauthorized", response.status);
          this.stopped = true;
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        this.failures = 0;
        this.lastByteAt = Date.now();
        this.onState("open");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          this.lastByteAt = Date.now();
          parser.feed(value);
        }
      } catch (err) {
        if (this.stopped) return;
        this.failures += 1;
      }
      this.lastByteAt = 0;
      if (this.stopped) return;
      this.onState("reconnecting");
      await new Promise((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, this.backoffMs(parser.retryMs));
      });
      this.wake = null;
      clearTimeout(this.timer);
    }
  }

  startEventSource() {
    const url = new URL(this.url, location.href);
    url.searchParams.set("access_token", this.token);
    this.onState("connecting");
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => this.onState("open");
    // EventSource reconnects by itself (sending Last-Event-ID); a 401 closes it for good.
    source.onerror = () => this.onState(source.readyState === EventSource.CLOSED ? "unauthorized" : "reconnecting");
    const handler = (e) => this.dispatch({ id: e.lastEventId, event: e.type, data: e.data });
    source.onmessage = handler;
    for (const type of this.eventTypes) source.addEventListener(type, handler);
  }
}
