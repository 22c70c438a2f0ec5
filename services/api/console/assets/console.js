// The console page: a single-use ticket -> noVNC on the ticket's WebSocket.
// The ticket comes from the URL fragment (#ticket=..., what `lq vm console` prints: never the API
// token), or the page asks for one with the API token from the web UI's localStorage (or, for
// older links, #token=...). Fragments are never sent to a server and leave the address bar at once.
import RFB from "/console/novnc/core/rfb.js";

const TOKEN_KEY = "lq.token";
const statusEl = document.getElementById("status");
const screen = document.getElementById("screen");
const form = document.getElementById("token-form");
const reconnectButton = document.getElementById("reconnect");
const cadButton = document.getElementById("ctrl-alt-del");
let rfb = null;

/** The VM id (or name) from /v1/vms/{vm}/console. */
function vmRef() {
  const parts = location.pathname.split("/");
  return decodeURIComponent(parts[3] ?? "");
}

function setState(state, text) {
  document.body.dataset.state = state;
  statusEl.textContent = text;
}

// A ticket from the link, used once: it is spent by the WebSocket that presents it.
let linkTicket = null;

function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) localStorage.setItem(TOKEN_KEY, token);
  const ticket = params.get("ticket");
  if (ticket) linkTicket = { token: ticket, url: `/v1/console/ws?token=${encodeURIComponent(ticket)}` };
  if (token || ticket) history.replaceState(null, "", location.pathname + location.search);
}

class ProblemError extends Error {
  constructor(status, body) {
    super(body.detail ?? body.title ?? `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? `http_${status}`;
    this.hint = body.hint ?? "";
  }
  get line() {
    return this.hint ? `${this.code}: ${this.message} — ${this.hint}` : `${this.code}: ${this.message}`;
  }
}

async function requestTicket(vm) {
  const token = localStorage.getItem(TOKEN_KEY) ?? "";
  if (!token) throw new ProblemError(401, { code: "unauthorized", detail: "no API token yet" });
  const response = await fetch(`/v1/vms/${encodeURIComponent(vm)}/console`, {
    method: "POST",
    headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ProblemError(response.status, body);
  }
  return response.json();
}

function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

async function connect() {
  const vm = vmRef();
  document.getElementById("vm-name").textContent = vm;
  document.title = `${vm} — console`;
  reconnectButton.hidden = true;
  setState("ticket", "Asking for a console ticket…");
  let ticket = linkTicket;
  const fromLink = ticket !== null;
  let opened = false;
  linkTicket = null;
  try {
    ticket ??= await requestTicket(vm);
  } catch (err) {
    if (err.status === 401) {
      form.hidden = false;
      if (!localStorage.getItem(TOKEN_KEY)) {
        err = new ProblemError(401, { code: "console_link_used", detail:
          "this console link was for one session", hint:
          "Run 'lq vm console' again for a new link, or sign in with the API token below." });
      }
    }
    setState("error", err.line ?? String(err));
    reconnectButton.hidden = err.status === 401;
    return;
  }
  form.hidden = true;
  setState("connecting", "Connecting…");
  // shared: a second viewer of the same VM must not disconnect the first.
  rfb = new RFB(screen, wsUrl(ticket.url), { shared: true });
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => {
    opened = true;
    cadButton.disabled = false;
    setState("connected", "Connected");
    rfb.focus();
  });
  rfb.addEventListener("desktopname", (e) => {
    document.getElementById("vm-name").textContent = `${vm} (${e.detail.name})`;
  });
  rfb.addEventListener("credentialsrequired", () => {
    setState("error", "The VNC display asks for a password; Limiquantix displays have none.");
    rfb.disconnect();
  });
  rfb.addEventListener("securityfailure", (e) => {
    setState("error", `VNC security failure: ${e.detail.reason ?? e.detail.status}`);
  });
  rfb.addEventListener("disconnect", (e) => {
    cadButton.disabled = true;
    reconnectButton.hidden = false;
    if (fromLink && !opened) {
      // The gateway refused the link's ticket (used already, or expired) before the upgrade.
      setState("error", "console_link_used: this link's ticket was refused (a link works once, " +
        "for a short time) — run 'lq vm console' again for a new link.");
    } else if (document.body.dataset.state !== "error") {
      setState("disconnected", e.detail.clean ? "Disconnected" : "Connection lost");
    }
    rfb = null;
  });
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const token = new FormData(form).get("token")?.toString().trim();
  if (token) localStorage.setItem(TOKEN_KEY, token);
  form.reset();
  connect();
});
reconnectButton.addEventListener("click", () => connect());
cadButton.addEventListener("click", () => rfb?.sendCtrlAltDel());

takeFragment();
connect();
