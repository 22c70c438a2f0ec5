// What the VM page and the create progress view show from `guest` (docs/guest-agent.md): the
// readiness phases with their times, addresses with where they came from, file systems, and the
// run-command box's argument splitting. Pure functions (vitest exercises them).
import type { VmRecord } from "../api/types";

export type GuestInfo = NonNullable<VmRecord["guest"]>;
export type GuestPhase = NonNullable<GuestInfo["phase"]>;

/** A boot's phases in order; cloud-init ends done or failed (one of the two is reached). */
export const PHASES: { key: GuestPhase; title: string; text: string }[] = [
  { key: "defined", title: "Defined", text: "The domain exists on the node." },
  { key: "booting", title: "Booting", text: "The domain started; the guest boots." },
  { key: "network", title: "Network", text: "The guest has its first address." },
  { key: "cloud_init_done", title: "Cloud-init done", text: "cloud-init finished in the guest." },
  { key: "cloud_init_failed", title: "Cloud-init failed", text: "cloud-init finished with errors." },
  { key: "ssh", title: "SSH", text: "The VM's SSH endpoint answers with a banner." },
  { key: "ready", title: "Ready", text: "The guest is ready to use." },
];
const RANK: Record<GuestPhase, number> = {
  defined: 0, booting: 1, network: 2, cloud_init_done: 3, cloud_init_failed: 3, ssh: 4, ready: 5,
};

export interface PhaseRow {
  key: GuestPhase;
  title: string;
  text: string;
  status: "done" | "current" | "todo";
  at: string | null; // when it was reached
  offsetS: number | null; // seconds after the boot's first phase
}

function seconds(from: string, to: string): number | null {
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isNaN(a) || Number.isNaN(b) ? null : (b - a) / 1000;
}

/** The phases to show: reached ones with their times, the next one as current, the rest to do.
 * Of cloud-init's two endings only the one reached (or "done" while waiting) is listed. */
export function phaseRows(guest: GuestInfo | undefined, opts: { withCloudInit: boolean; failed?: boolean } = { withCloudInit: true }): PhaseRow[] {
  const phases = guest?.phases ?? {};
  const latest = guest?.phase ?? null;
  const start = phases.defined ?? phases.booting ?? null;
  const ciFailed = "cloud_init_failed" in phases || latest === "cloud_init_failed";
  const shown = PHASES.filter((p) => {
    if (p.key === "cloud_init_failed") return opts.withCloudInit && ciFailed;
    if (p.key === "cloud_init_done") return opts.withCloudInit && !ciFailed;
    return true;
  });
  const latestRank = latest ? RANK[latest] : -1;
  let currentGiven = false;
  return shown.map((p) => {
    const at = phases[p.key] ?? null;
    // A phase passed without being recorded (e.g. no SSH forward to probe) is done, untimed.
    const reached = at !== null || RANK[p.key] <= latestRank;
    let status: PhaseRow["status"] = reached ? "done" : "todo";
    if (!reached && !currentGiven && !opts.failed) {
      status = "current";
      currentGiven = true;
    }
    return { ...p, status, at, offsetS: at && start ? seconds(start, at) : null };
  });
}

/** "42 s", "3 min 05 s", "1 h 02 min": elapsed time as people read it. */
export function duration(totalS: number): string {
  const s = Math.max(0, Math.floor(totalS));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** Seconds since `from` at `now` (ms), or null for a missing/invalid time. */
export function since(from: string | null | undefined, now: number): number | null {
  if (!from) return null;
  const t = Date.parse(from);
  return Number.isNaN(t) ? null : (now - t) / 1000;
}

export interface AddressRow {
  address: string;
  prefix: number | null;
  iface: string;
  source: "agent" | "serial";
}

/** Every address with its source: the agent's and the serial log's details, or (older
 * records) the plain list, which came from the serial log. */
export function addressRows(guest: GuestInfo | undefined): AddressRow[] {
  const detailed = guest?.ip_addresses ?? [];
  if (detailed.length) {
    return detailed.map((a) => ({ address: a.address, prefix: a.prefix ?? null, iface: a.interface ?? "", source: a.source ?? "serial" }));
  }
  return (guest?.addresses ?? []).map((address) => ({ address, prefix: null, iface: "", source: "serial" }));
}

export const STOPPED_BY: Record<string, string> = {
  agent: "guest agent shutdown",
  acpi: "ACPI shutdown",
  power_off: "powered off (the stop timeout passed, or a force stop)",
};

/** Split a command line into words as a POSIX shell would for quotes and backslashes
 * (no expansions): `cat '/etc/my file'` -> ["cat", "/etc/my file"]. Throws on an open quote. */
export function splitArgs(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`the ${quote === "'" ? "single" : "double"} quote is not closed`);
  if (inWord) words.push(word);
  return words;
}

/** The exec request's `command` for what was typed: through the guest's shell (`sh -c` on
 * Linux, `cmd.exe /c` on Windows: pipes, globs, variables) or as a program and its arguments. */
export function commandOf(line: string, viaShell: boolean, osType: "linux" | "windows" = "linux"): string[] {
  if (!viaShell) return splitArgs(line);
  return osType === "windows" ? ["cmd.exe", "/c", line] : ["sh", "-c", line];
}
