// The VM's display in the page: a single-use ticket, then noVNC on the ticket's WebSocket.
// noVNC is not bundled: its ES modules are served by the gateway (/console/novnc, installed by
// scripts/setup.sh) and imported at run time.
import { useCallback, useEffect, useRef, useState } from "react";
import { errorLine, ProblemError, sendJson, seg } from "../../api/client";
import type { TicketResponse, VmRecord } from "../../api/types";
import { Dialog } from "../../components/Dialog";

const NOVNC_URL = "/console/novnc/core/rfb.js";
const CONSOLE_STATES = ["running", "ready", "paused", "stopping", "rebooting"];

interface Rfb extends EventTarget {
  scaleViewport: boolean;
  focus(): void;
  disconnect(): void;
  sendCtrlAltDel(): void;
  sendKey(keysym: number, code: string | null, down?: boolean): void;
  clipboardPasteFrom(text: string): void;
}
type RfbConstructor = new (target: HTMLElement, url: string, options: { shared: boolean }) => Rfb;

let rfbModule: Promise<RfbConstructor> | null = null;
function loadRfb(): Promise<RfbConstructor> {
  rfbModule ??= import(/* @vite-ignore */ NOVNC_URL).then((m: { default: RfbConstructor }) => m.default);
  return rfbModule;
}

export function wsUrl(path: string): string {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** The X11 keysym that types `char` (Latin-1 directly, Unicode as 0x01000000 + code point). */
export function keysymOf(char: string): number {
  if (char === "\n" || char === "\r") return 0xff0d;
  if (char === "\t") return 0xff09;
  const code = char.codePointAt(0) ?? 0;
  return code >= 0x20 && code <= 0xff ? code : 0x01000000 + code;
}

type Status = "idle" | "ticket" | "connecting" | "connected" | "disconnected" | "error";

export function ConsoleTab({ vm }: { vm: VmRecord }) {
  const screen = useRef<HTMLDivElement>(null);
  const frame = useRef<HTMLDivElement>(null);
  const rfb = useRef<Rfb | null>(null);
  const [status, setStatus] = useState<Status>("idle");
  const [message, setMessage] = useState("");
  const [pasteOpen, setPasteOpen] = useState(false);
  const [pasteText, setPasteText] = useState("");
  const available = CONSOLE_STATES.includes(vm.state);

  const connect = useCallback(async () => {
    rfb.current?.disconnect();
    rfb.current = null;
    setStatus("ticket");
    setMessage("Asking for a console ticket…");
    try {
      const [RFB, ticket] = await Promise.all([
        loadRfb(),
        sendJson<TicketResponse>("POST", `/v1/vms/${seg(vm.id)}/console`),
      ]);
      if (!screen.current) return;
      setStatus("connecting");
      setMessage("Connecting…");
      // shared: a second viewer of the same VM must not disconnect the first.
      const session = new RFB(screen.current, wsUrl(ticket.url), { shared: true });
      session.scaleViewport = true;
      session.addEventListener("connect", () => {
        setStatus("connected");
        setMessage("Connected");
        session.focus();
      });
      session.addEventListener("disconnect", (e) => {
        const clean = (e as CustomEvent<{ clean: boolean }>).detail?.clean;
        if (rfb.current === session) rfb.current = null;
        setStatus((s) => (s === "error" ? s : "disconnected"));
        setMessage((m) => (m.startsWith("VNC") ? m : clean ? "Disconnected" : "Connection lost"));
      });
      session.addEventListener("securityfailure", (e) => {
        const detail = (e as CustomEvent<{ reason?: string; status?: number }>).detail;
        setStatus("error");
        setMessage(`VNC security failure: ${detail?.reason ?? detail?.status ?? ""}`);
      });
      rfb.current = session;
    } catch (err) {
      setStatus("error");
      setMessage(err instanceof ProblemError ? err.line : errorLine(err));
    }
  }, [vm.id]);

  useEffect(() => {
    if (available && status === "idle") void connect();
  }, [available, status, connect]);

  useEffect(() => () => {
    rfb.current?.disconnect();
    rfb.current = null;
  }, []);

  const typeText = (text: string) => {
    const session = rfb.current;
    if (!session) return;
    session.clipboardPasteFrom(text);
    for (const char of text) session.sendKey(keysymOf(char), null);
    session.focus();
  };

  const pasteClipboard = async () => {
    try {
      const text = await navigator.clipboard.readText();
      if (text) {
        typeText(text);
        return;
      }
    } catch {
      // no clipboard permission: ask for the text instead
    }
    setPasteOpen(true);
  };

  const connected = status === "connected";
  return (
    <section className="console-tab" aria-label="Console">
      <div className="console-bar">
        <span id="console-status" role="status" aria-live="polite" data-state={status}>
          {available ? message || "…" : `${vm.name} is ${vm.state}: the console shows a display only while it runs.`}
        </span>
        <div className="button-row">
          <button type="button" disabled={!connected} onClick={() => rfb.current?.sendCtrlAltDel()}>Ctrl+Alt+Del</button>
          <button type="button" disabled={!connected} onClick={() => void pasteClipboard()}>Paste clipboard</button>
          <button type="button" disabled={!connected} onClick={() => setPasteOpen(true)}>Type text…</button>
          <button type="button" disabled={!connected} onClick={() => void frame.current?.requestFullscreen()}>Fullscreen</button>
          {available && (status === "disconnected" || status === "error") && (
            <button type="button" onClick={() => void connect()}>Reconnect</button>
          )}
          <a className="button" href={`/v1/vms/${encodeURIComponent(vm.id)}/console`} target="_blank" rel="noreferrer">Open in a new window</a>
        </div>
      </div>
      <div className="console-frame" ref={frame}>
        <div className="console-screen" id="console-screen" ref={screen} />
      </div>
      <Dialog open={pasteOpen} title="Type text into the VM" onClose={() => setPasteOpen(false)} id="paste-dialog">
        <form className="stack" onSubmit={(e) => { e.preventDefault(); typeText(pasteText); setPasteText(""); setPasteOpen(false); }}>
          <label htmlFor="paste-text">Text (sent as key presses; a new line presses Enter)</label>
          <textarea id="paste-text" rows={4} value={pasteText} onChange={(e) => setPasteText(e.target.value)} />
          <div className="dialog-actions">
            <button type="button" onClick={() => setPasteOpen(false)}>Cancel</button>
            <button type="submit" className="primary">Type it</button>
          </div>
        </form>
      </Dialog>
    </section>
  );
}
