// Day-2 operations on the VM page (docs/day2.md): snapshots, clone, publish, resize, extra
// disks and the media drive. What is allowed from which state and the forms' checks mirror the
// gateway's, so the page refuses what the API would refuse, saying why, before any request.
import type { components } from "../api/schema";
import type { LqEvent, VmRecord } from "../api/types";
import { bytes } from "./format";

export type VmSnapshot = components["schemas"]["VmSnapshot"];
export type ResizeVmRequest = components["schemas"]["ResizeVmRequest"];

const UP = ["running", "ready"];
/** Where a VM may be snapshotted, reverted, cloned or published (the gateway's SNAPSHOT_STATES). */
export const SNAPSHOT_STATES = [...UP, "stopped"];
/** Where its devices may change (resize, disks, media). */
export const DEVICE_STATES = [...UP, "stopped"];
const SNAPSHOT_NAME = /^[A-Za-z0-9_.-]{1,63}$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const MEMORY_STEP_MIB = 128; // a running VM's memory grows by multiples of this
export const MAX_EXTRA_DISKS = 16;

export function isUp(vm: Pick<VmRecord, "state">): boolean {
  return UP.includes(vm.state);
}

/** Why the VM cannot be snapshotted (or cloned, published) now, or "". */
export function snapshotBlocked(vm: Pick<VmRecord, "state" | "name">): string {
  return SNAPSHOT_STATES.includes(vm.state) ? "" : `${vm.name} is ${vm.state}: snapshots need it running or stopped.`;
}

/** Why the VM cannot become a template now, or "" (the gateway: stopped VMs only; not
 * Windows, whose clones need sysprep). */
export function templateBlocked(vm: Pick<VmRecord, "state" | "name" | "os_type" | "template">): string {
  if (vm.template) return `${vm.name} is a template already.`;
  if (vm.os_type === "windows") return "Windows VMs cannot be templates: their clones need sysprep.";
  return vm.state === "stopped" ? "" : `${vm.name} is ${vm.state}: stop it first (a template is made from a stopped VM).`;
}

/** What a linked clone of this VM is based on (a frozen base: the template's disk, or a
 * snapshot's base the node writes once), given the chosen snapshot's name ("" = none). */
export function linkedCloneBase(vm: Pick<VmRecord, "template">, snapshotName: string, cloneName: string): string {
  if (snapshotName) {
    return `Based on snapshot ${snapshotName}, frozen once on the node; the snapshot is kept while the clone exists.`;
  }
  if (vm.template) return "Based on the template's disk.";
  return `A snapshot clone-${cloneName || "NAME"} is taken now and frozen on the node; it is kept while the clone exists.`;
}

/** Whether publish can generalize the guest (it runs with its agent connected): the
 * gateway's default for `generalize`. */
export function canGeneralize(vm: Pick<VmRecord, "state" | "guest">): boolean {
  return isUp(vm) && Boolean(vm.guest?.agent?.connected);
}

/** The linked clones that depend on a VM, by name: a template's (on its disk) or any other
 * VM's (each on a snapshot's frozen base). The gateway refuses the VM's delete while any is left. */
export function linkedClonesOf(source: Pick<VmRecord, "id">, vms: Iterable<VmRecord>): VmRecord[] {
  return [...vms].filter((v) => v.clone_of?.vm_id === source.id && v.clone_of.linked !== false)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** What a linked clone of `source` is kept on, in the user's words: "snapshot NAME" (the
 * snapshot's id while the source's record does not list it), or "the template's disk". */
export function cloneBaseName(source: Pick<VmRecord, "snapshots">, clone: Pick<VmRecord, "clone_of">): string {
  const id = clone.clone_of?.snapshot_id ?? "";
  if (!id) return "the template's disk";
  return `snapshot ${(source.snapshots ?? []).find((s) => s.id === id)?.name ?? id}`;
}

/** The linked clones kept on each snapshot of a VM (snapshot id → clones, by name). */
export function clonesBySnapshot(clones: readonly VmRecord[]): Map<string, VmRecord[]> {
  const by = new Map<string, VmRecord[]>();
  for (const clone of clones) {
    const id = clone.clone_of?.snapshot_id ?? "";
    if (id) by.set(id, [...(by.get(id) ?? []), clone]);
  }
  return by;
}

/** Why a snapshot cannot be deleted (the gateway's 409 snapshot_in_use), or "". */
export function snapshotDeleteBlocked(clones: readonly Pick<VmRecord, "name">[] | undefined): string {
  if (!clones?.length) return "";
  const names = clones.map((c) => c.name).join(", ");
  return `Base of linked clones: ${names}. Delete them first, then the snapshot.`;
}

/** Why a VM cannot be deleted because linked clones depend on it (the gateway's 409
 * snapshot_in_use, or template_in_use for a template), or "". */
export function vmDeleteBlocked(vm: Pick<VmRecord, "name" | "template">, clones: readonly Pick<VmRecord, "name">[]): string {
  if (!clones.length) return "";
  const names = clones.map((c) => c.name).join(", ");
  const on = vm.template ? "its disk" : "its snapshots";
  return `${vm.name} is the base of ${clones.length} linked clone${clones.length === 1 ? "" : "s"} (kept on ${on}): ${names}.`
    + ` Delete ${clones.length === 1 ? "it" : "them"} first, then ${vm.name}.`;
}

export function snapshotNameProblem(name: string, existing: readonly VmSnapshot[]): string {
  if (!name) return "Give the snapshot a name.";
  if (!SNAPSHOT_NAME.test(name)) return "1-63 letters, digits, '_', '.' or '-'.";
  if (existing.some((s) => s.name === name)) return `${name} exists already.`;
  return "";
}

/** Why a memory snapshot is not possible, or "" (a stopped VM has no memory; a running UEFI
 * (Windows) VM cannot be snapshotted by QEMU at all). */
export function memorySnapshotBlocked(vm: Pick<VmRecord, "state" | "os_type">): string {
  if (vm.state === "stopped") return "A stopped VM has no memory to save.";
  if (vm.os_type === "windows") return "A running Windows (UEFI) VM cannot be snapshotted; stop it first.";
  return "";
}

export function snapshotSummary(snap: VmSnapshot): string {
  const what = snap.memory ? "disk and memory" : snap.quiesced ? "disk (file systems frozen)" : "disk (crash-consistent)";
  const size = snap.size_bytes ? `, ${bytes(snap.size_bytes)} of memory` : "";
  const taken = snap.vm_state ? `, taken while ${snap.vm_state}` : "";
  return `${what}${size}${taken}`;
}

export function dnsLabelProblem(name: string, what: string): string {
  if (!name) return `Give the ${what} a name.`;
  if (name.length > 63) return "At most 63 characters.";
  if (!DNS_LABEL.test(name)) return "Lower-case letters, digits and '-' only, starting and ending with a letter or digit.";
  return "";
}

export interface ResizeDraft {
  vcpus: string;
  memoryMib: string;
  diskGib: string;
}

export function resizeDraftOf(vm: VmRecord): ResizeDraft {
  return { vcpus: String(vm.vcpus), memoryMib: String(vm.memory_mib), diskGib: String(vm.disk_gib) };
}

/** The hot-plug ceilings in effect (older records have none: the current size). */
export function ceilings(vm: VmRecord): { vcpus: number; memoryMib: number } {
  return { vcpus: Math.max(vm.max_vcpus ?? 0, vm.vcpus), memoryMib: Math.max(vm.max_memory_mib ?? 0, vm.memory_mib) };
}

function whole(text: string): number | null {
  return /^\d+$/.test(text.trim()) ? Number(text.trim()) : null;
}

/** The PATCH body (only what changes) and the errors of the resize form. */
export function resizeRequest(vm: VmRecord, draft: ResizeDraft): { body: ResizeVmRequest; errors: Partial<Record<keyof ResizeDraft, string>> } {
  const errors: Partial<Record<keyof ResizeDraft, string>> = {};
  const body: ResizeVmRequest = {};
  const vcpus = whole(draft.vcpus);
  const memory = whole(draft.memoryMib);
  const disk = whole(draft.diskGib);
  if (vcpus === null || vcpus < 1 || vcpus > 256) errors.vcpus = "A whole number of vCPUs from 1 to 256.";
  if (memory === null || memory < 64 || memory > 4 * 1024 * 1024) errors.memoryMib = "Memory from 64 MiB to 4 TiB, in whole MiB.";
  if (disk === null || disk < 1 || disk > 64 * 1024) errors.diskGib = "A whole number of GiB from 1 to 65536.";
  else if (disk < vm.disk_gib) errors.diskGib = `The disk is ${vm.disk_gib} GiB and never shrinks; add an extra disk for space.`;
  if (isUp(vm)) {
    const max = ceilings(vm);
    if (vcpus !== null && vcpus < vm.vcpus) errors.vcpus ??= "A running VM cannot lose vCPUs: stop it first.";
    else if (vcpus !== null && vcpus > max.vcpus) errors.vcpus ??= `Running, it takes up to ${max.vcpus} vCPUs: stop it for more.`;
    if (memory !== null && memory < vm.memory_mib) errors.memoryMib ??= "A running VM cannot lose memory: stop it first.";
    else if (memory !== null && memory > max.memoryMib) errors.memoryMib ??= `Running, it takes up to ${max.memoryMib} MiB: stop it for more.`;
    else if (memory !== null && (memory - vm.memory_mib) % MEMORY_STEP_MIB) {
      errors.memoryMib ??= `Running, memory grows by multiples of ${MEMORY_STEP_MIB} MiB.`;
    }
  }
  if (vcpus !== null && vcpus !== vm.vcpus) body.vcpus = vcpus;
  if (memory !== null && memory !== vm.memory_mib) body.memory_mib = memory;
  if (disk !== null && disk !== vm.disk_gib) body.disk_gib = disk;
  return { body, errors };
}

/** One line for each day-2 event (the VM page's activity lists and the Events page). */
export function day2Summary(event: LqEvent): string | null {
  const who = event.name || event.vm_id || "";
  const snap = event.snapshot as VmSnapshot | undefined;
  switch (event.type) {
    case "vm.snapshot":
      return `${who}: snapshot ${snap?.name ?? ""} ${event.action}${snap?.error ? ` — ${snap.error}` : ""}`;
    case "vm.cloned":
      // Events omit fields at their default: no `linked` is a linked clone.
      return `${who}: cloned from ${String(event.source_vm_id ?? "")} (${event.linked === false ? "full" : "linked"} copy`
        + `${typeof event.seconds === "number" ? `, ${event.seconds.toFixed(1)} s` : ""}`
        + `${typeof event.disk_bytes === "number" ? `, ${bytes(event.disk_bytes)}` : ""}`
        + `${event.base_made && typeof event.base_bytes === "number" ? `, base frozen: ${bytes(event.base_bytes)}` : ""})`;
    case "vm.templated":
      return `${who}: made a template (frozen; the base of linked clones)`;
    case "vm.publish_progress": {
      const done = typeof event.bytes_done === "number" && event.bytes_done > 0
        ? ` ${bytes(event.bytes_done)}${event.bytes_total ? ` of ${bytes(event.bytes_total)}` : ""}` : "";
      return `${who}: publish ${String(event.phase ?? "")}${done}${event.message ? ` — ${String(event.message)}` : ""}`;
    }
    case "vm.resized":
      return `${who}: ${String(event.vcpus)} vCPUs, ${String(event.memory_mib)} MiB, ${String(event.disk_gib)} GiB${event.live ? " (live)" : ""}`;
    case "vm.disk_attached": {
      const disk = event.disk as { name?: string; size_gib?: number; target?: string } | undefined;
      return `${who}: disk ${disk?.name ?? ""} (${disk?.size_gib ?? "?"} GiB) attached as ${disk?.target ?? "?"}${event.live ? " (live)" : ""}`;
    }
    case "vm.disk_detached":
      return `${who}: disk ${String(event.disk_name || event.disk_id || "")} detached and deleted`;
    case "vm.media_inserted": {
      const media = event.media as { name?: string; image?: string } | undefined;
      return `${who}: ISO ${media?.name || media?.image || ""} inserted${event.live ? " (live)" : ""}`;
    }
    case "vm.media_ejected":
      return `${who}: media ejected`;
    case "vm.phase":
      return `${who}: phase ${String(event.phase ?? "").replace(/_/g, " ")}${typeof event.elapsed_s === "number" ? ` after ${event.elapsed_s.toFixed(1)} s` : ""}`;
    case "vm.agent_changed":
      return `${who}: guest agent ${event.connected ? "connected" : "disconnected"}${event.version ? ` (${String(event.version)})` : ""}`;
    case "vm.addresses_changed":
      return `${who}: addresses ${((event.previous as string[] | undefined) ?? []).join(", ") || "none"} → ${((event.addresses as string[] | undefined) ?? []).join(", ") || "none"}`;
    case "vm.guest_access":
      return `${who}: ${String(event.action)} ${String(event.target ?? "")} by ${String(event.user || "?")}${event.error ? ` — ${String(event.error)}` : ""}`;
    default:
      return null;
  }
}

/** Event types each section follows (its activity list). */
export const ACTIVITY: Record<string, readonly string[]> = {
  snapshots: ["vm.snapshot"],
  clone: ["vm.cloned", "vm.publish_progress", "vm.templated"],
  hardware: ["vm.resized", "vm.disk_attached", "vm.disk_detached", "vm.media_inserted", "vm.media_ejected"],
};

/** Failed actions of a section, by their action name prefix (vm.action_failed's `action`). */
export const FAILED_ACTIONS: Record<string, readonly string[]> = {
  snapshots: ["vm.snapshot"],
  clone: ["vm.publish", "vm.clone", "vm.create"],
  hardware: ["vm.resize", "vm.disk_", "vm.media_"],
};

export function sectionEvents(events: readonly LqEvent[], vmId: string, section: string, extraVmIds: readonly string[] = []): LqEvent[] {
  const ids = new Set([vmId, ...extraVmIds]);
  const types = ACTIVITY[section] ?? [];
  const failed = FAILED_ACTIONS[section] ?? [];
  return events.filter((e) => e.vm_id !== undefined && ids.has(e.vm_id)
    && (types.includes(e.type) || (e.type === "vm.action_failed" && failed.some((p) => String(e.action ?? "").startsWith(p)))));
}

/** The latest failure among a section's events (its error carries the hint). */
export function latestFailure(events: readonly LqEvent[]): LqEvent | undefined {
  return [...events].reverse().find((e) => e.error && e.type === "vm.action_failed");
}
