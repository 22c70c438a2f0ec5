import type { LqEvent, VmRecord } from "../api/types";
import {
  canGeneralize, cloneBaseName, clonesBySnapshot, day2Summary, latestFailure, linkedCloneBase, linkedClonesOf, snapshotDeleteBlocked,
  templateBlocked, vmDeleteBlocked, memorySnapshotBlocked, resizeRequest, sectionEvents, snapshotBlocked, snapshotNameProblem,
  snapshotSummary, type VmSnapshot,
} from "./day2";

const NOW = "2026-01-01T10:00:00Z";
const vm: VmRecord = { id: "vm-1", name: "web-1", state: "running", node: "node-a", vcpus: 1, memory_mib: 1024, disk_gib: 10,
                       max_vcpus: 4, max_memory_mib: 4096, created_at: NOW, updated_at: NOW };
const snap = (patch: Partial<VmSnapshot>): VmSnapshot => ({ id: "s1", name: "before", created_at: NOW, state: "ready", ...patch });

describe("snapshots", () => {
  it("are allowed on running and stopped VMs, with memory only while running (and not on Windows)", () => {
    expect(snapshotBlocked(vm)).toBe("");
    expect(snapshotBlocked({ ...vm, state: "stopped" })).toBe("");
    expect(snapshotBlocked({ ...vm, state: "paused" })).toBe("web-1 is paused: snapshots need it running or stopped.");
    expect(memorySnapshotBlocked(vm)).toBe("");
    expect(memorySnapshotBlocked({ ...vm, state: "stopped" })).toMatch(/no memory/);
    expect(memorySnapshotBlocked({ ...vm, os_type: "windows" })).toMatch(/Windows \(UEFI\)/);
  });

  it("have names the gateway takes, unique per VM", () => {
    expect(snapshotNameProblem("", [])).toBe("Give the snapshot a name.");
    expect(snapshotNameProblem("before upgrade", [])).toMatch(/letters, digits/);
    expect(snapshotNameProblem("before", [snap({})])).toBe("before exists already.");
    expect(snapshotNameProblem("v1.2_pre-fix", [snap({})])).toBe("");
  });

  it("say what they hold", () => {
    expect(snapshotSummary(snap({ memory: true, size_bytes: 268435456, vm_state: "running" }))).toBe(
      "disk and memory, 256 MiB of memory, taken while running");
    expect(snapshotSummary(snap({ quiesced: true }))).toBe("disk (file systems frozen)");
    expect(snapshotSummary(snap({ vm_state: "stopped" }))).toBe("disk (crash-consistent), taken while stopped");
  });
});

describe("resize", () => {
  const draft = (vcpus: string, memoryMib: string, diskGib: string) => ({ vcpus, memoryMib, diskGib });

  it("sends only what changes", () => {
    expect(resizeRequest(vm, draft("2", "1024", "20"))).toEqual({ body: { vcpus: 2, disk_gib: 20 }, errors: {} });
    expect(resizeRequest(vm, draft("1", "1024", "10")).body).toEqual({});
  });

  it("refuses a shrinking disk, and on a running VM less, more than the ceilings or odd memory steps", () => {
    expect(resizeRequest(vm, draft("1", "1024", "5")).errors.diskGib).toMatch(/never shrinks/);
    const running = resizeRequest({ ...vm, vcpus: 2 }, draft("1", "8192", "10")).errors;
    expect(running.vcpus).toBe("A running VM cannot lose vCPUs: stop it first.");
    expect(running.memoryMib).toBe("Running, it takes up to 4096 MiB: stop it for more.");
    expect(resizeRequest(vm, draft("8", "1100", "10")).errors).toEqual({
      vcpus: "Running, it takes up to 4 vCPUs: stop it for more.", memoryMib: "Running, memory grows by multiples of 128 MiB." });
    // Stopped, anything within the API's bounds goes (the new size applies at the next start).
    expect(resizeRequest({ ...vm, state: "stopped" }, draft("8", "1100", "10"))).toEqual({ body: { vcpus: 8, memory_mib: 1100 }, errors: {} });
    expect(resizeRequest(vm, draft("0", "32", "x")).errors).toEqual({
      vcpus: "A whole number of vCPUs from 1 to 256.", memoryMib: "Memory from 64 MiB to 4 TiB, in whole MiB.",
      diskGib: "A whole number of GiB from 1 to 65536." });
  });
});

describe("activity", () => {
  const events: LqEvent[] = [
    { id: "1", type: "vm.snapshot", vm_id: "vm-1", name: "web-1", action: "created", snapshot: snap({}) },
    { id: "2", type: "vm.action_failed", vm_id: "vm-1", name: "web-1", action: "vm.snapshot.revert",
      error: { code: "snapshot_failed", message: "boom", hint: "try again" } },
    { id: "3", type: "vm.resized", vm_id: "vm-1", name: "web-1", vcpus: 2, memory_mib: 2048, disk_gib: 20, live: true },
    { id: "4", type: "vm.snapshot", vm_id: "vm-2", name: "other", action: "created", snapshot: snap({}) },
    { id: "5", type: "vm.action_failed", vm_id: "vm-1", name: "web-1", action: "vm.disk_attach",
      error: { code: "disk_failed", message: "no" } },
    { id: "5b", type: "vm.state_changed", vm_id: "vm-1", name: "web-1", state: "running", reason: "vm.snapshot.create failed",
      error: { code: "internal", message: "the same failure, said again" } },
    // As sent: fields at their default (linked: true, base_made: false) are omitted.
    { id: "6", type: "vm.cloned", vm_id: "vm-9", name: "web-1-copy", source_vm_id: "vm-1", seconds: 1.25, disk_bytes: 1048576 },
  ];

  it("picks each section's events and failures for the VM (and the clones made from it)", () => {
    expect(sectionEvents(events, "vm-1", "snapshots").map((e) => e.id)).toEqual(["1", "2"]);
    expect(latestFailure(sectionEvents(events, "vm-1", "snapshots"))?.error?.code).toBe("snapshot_failed");
    expect(sectionEvents(events, "vm-1", "hardware").map((e) => e.id)).toEqual(["3", "5"]);
    expect(sectionEvents(events, "vm-1", "clone", ["vm-9"]).map((e) => e.id)).toEqual(["6"]);
  });

  it("summarises day-2 events in one line", () => {
    expect(day2Summary(events[0])).toBe("web-1: snapshot before created");
    expect(day2Summary(events[2])).toBe("web-1: 2 vCPUs, 2048 MiB, 20 GiB (live)");
    expect(day2Summary(events[6])).toBe("web-1-copy: cloned from vm-1 (linked copy, 1.3 s, 1.0 MiB)");
    expect(day2Summary({ ...events[6], linked: false })).toBe("web-1-copy: cloned from vm-1 (full copy, 1.3 s, 1.0 MiB)");
    expect(day2Summary({ ...events[6], base_made: true, base_bytes: 2097152 }))
      .toBe("web-1-copy: cloned from vm-1 (linked copy, 1.3 s, 1.0 MiB, base frozen: 2.0 MiB)");
    expect(day2Summary({ id: "7", type: "vm.publish_progress", vm_id: "vm-1", name: "web-1", phase: "upload",
                         bytes_done: 524288, bytes_total: 1048576 })).toBe("web-1: publish upload 512 KiB of 1.0 MiB");
    expect(day2Summary({ id: "8", type: "vm.media_inserted", vm_id: "vm-1", name: "web-1", media: { image: "i", name: "tools.iso" } }))
      .toBe("web-1: ISO tools.iso inserted");
    expect(day2Summary({ id: "9", type: "vm.state_changed" })).toBeNull();
  });
});

describe("templates", () => {
  it("are made from stopped VMs only, never Windows, once", () => {
    expect(templateBlocked({ ...vm, state: "stopped" })).toBe("");
    expect(templateBlocked(vm)).toBe("web-1 is running: stop it first (a template is made from a stopped VM).");
    expect(templateBlocked({ ...vm, state: "stopped", os_type: "windows" })).toMatch(/sysprep/);
    expect(templateBlocked({ ...vm, state: "stopped", template: true })).toBe("web-1 is a template already.");
  });

  it("say what a linked clone is based on, and list the clones that depend on them", () => {
    expect(linkedCloneBase({ ...vm, template: true }, "", "web-2")).toBe("Based on the template's disk.");
    expect(linkedCloneBase(vm, "", "web-2")).toBe(
      "A snapshot clone-web-2 is taken now and frozen on the node; it is kept while the clone exists.");
    expect(linkedCloneBase(vm, "before", "web-2")).toMatch(/^Based on snapshot before, frozen once on the node/);
    const clone = (id: string, name: string, linked: boolean): VmRecord => ({ ...vm, id, name, clone_of: { vm_id: "vm-1", linked } });
    expect(linkedClonesOf(vm, [clone("b", "zz", true), clone("c", "full", false), vm, clone("d", "aa", true)])
      .map((v) => v.name)).toEqual(["aa", "zz"]);
  });

  it("say when publish generalizes by default: running, with the guest agent", () => {
    const agent = (connected: boolean) => ({ agent: { connected } });
    expect(canGeneralize({ ...vm, guest: agent(true) })).toBe(true);
    expect(canGeneralize({ ...vm, guest: agent(false) })).toBe(false);
    expect(canGeneralize({ ...vm, state: "stopped", guest: agent(true) })).toBe(false);
    expect(day2Summary({ id: "9", type: "vm.templated", vm_id: "vm-1", name: "web-1" })).toBe(
      "web-1: made a template (frozen; the base of linked clones)");
  });
});

describe("linked clones of a VM that is not a template", () => {
  const at = (id: string, name: string, snapshotId: string, linked?: boolean): VmRecord => ({
    ...vm, id, name, clone_of: { vm_id: "vm-1", snapshot_id: snapshotId, ...(linked === undefined ? {} : { linked }) },
  });
  const source: VmRecord = { ...vm, snapshots: [snap({ id: "s1", name: "clone-clone-a" }), snap({ id: "s2", name: "nightly" })] };
  const a = at("a", "clone-a", "s1");
  const b = at("b", "clone-b", "s2", true);
  const c = at("c", "clone-c", "s2");
  const full = at("f", "full", "s2", false);
  const other: VmRecord = { ...at("o", "other", "s2"), clone_of: { vm_id: "vm-9", snapshot_id: "s2" } };

  it("are listed whatever the source (a record omits linked at its default: linked)", () => {
    expect(linkedClonesOf(source, [c, full, other, source, b, a]).map((v) => v.name)).toEqual(["clone-a", "clone-b", "clone-c"]);
    expect(linkedClonesOf(source, [full, other])).toEqual([]);
  });

  it("name the snapshot each is kept on (its id until the source lists it; a template's disk)", () => {
    expect(cloneBaseName(source, a)).toBe("snapshot clone-clone-a");
    expect(cloneBaseName(vm, a)).toBe("snapshot s1");
    const template: VmRecord = { ...vm, template: true };
    expect(cloneBaseName(template, { clone_of: { vm_id: "vm-1" } })).toBe("the template's disk");
  });

  it("block their snapshots' delete, saying which clones", () => {
    const by = clonesBySnapshot(linkedClonesOf(source, [c, full, b, a]));
    expect([...by.keys()].sort()).toEqual(["s1", "s2"]);
    expect(by.get("s2")?.map((v) => v.name)).toEqual(["clone-b", "clone-c"]);
    expect(snapshotDeleteBlocked(by.get("s2"))).toBe("Base of linked clones: clone-b, clone-c. Delete them first, then the snapshot.");
    expect(snapshotDeleteBlocked(by.get("s3"))).toBe("");
    expect(clonesBySnapshot([at("t", "t", "")]).size).toBe(0); // a template's clone: on no snapshot
  });

  it("block the VM's delete, naming them", () => {
    expect(vmDeleteBlocked(source, [a])).toBe(
      "web-1 is the base of 1 linked clone (kept on its snapshots): clone-a. Delete it first, then web-1.");
    expect(vmDeleteBlocked({ ...source, template: true }, [a, b])).toBe(
      "web-1 is the base of 2 linked clones (kept on its disk): clone-a, clone-b. Delete them first, then web-1.");
    expect(vmDeleteBlocked(source, [])).toBe("");
  });
});
