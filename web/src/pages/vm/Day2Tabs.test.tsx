import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import type { VmRecord } from "../../api/types";
import { ClonePublishTab } from "./ClonePublishTab";
import { HardwareTab } from "./HardwareTab";
import { SnapshotsTab } from "./SnapshotsTab";

const NOW = "2026-01-01T10:00:00Z";
// Shaped as GET /v1/vms/{vm} answers a VM with two snapshots, an extra disk and an ISO inserted.
const VM: VmRecord = {
  id: "vm-1", name: "web-1", state: "running", node: "node-a", image: "img-1", vcpus: 2, memory_mib: 2048, disk_gib: 20,
  max_vcpus: 4, max_memory_mib: 4096, created_at: NOW, updated_at: NOW,
  snapshots: [
    { id: "s1", name: "base", created_at: NOW, state: "ready", memory: true, size_bytes: 1 << 28, vm_state: "running" },
    { id: "s2", name: "wip", created_at: NOW, state: "creating", memory: false },
  ],
  disks: [{ id: "d1", name: "data", size_gib: 5, target: "sdf", bus: "scsi", state: "attached" }],
  media: { image: "iso-1", name: "tools.iso", state: "inserted", target: "sde" },
};

afterEach(() => vi.unstubAllGlobals());

describe("the Snapshots tab", () => {
  it("lists snapshots newest first, revert only for ready ones", () => {
    render(<SnapshotsTab vm={VM} />);
    const items = document.querySelectorAll("#snapshots .snapshot");
    expect([...items].map((i) => i.getAttribute("data-snapshot"))).toEqual(["wip", "base"]);
    expect((screen.getByRole("button", { name: "Revert to base" }) as HTMLButtonElement).disabled).toBe(false);
    expect((screen.getByRole("button", { name: "Revert to wip" }) as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByText(/disk and memory, 256 MiB of memory, taken while running/)).toBeTruthy();
  });

  it("offers no memory snapshot for a stopped VM, and none at all for a paused one", () => {
    const { unmount } = render(<SnapshotsTab vm={{ ...VM, state: "stopped" }} />);
    expect((screen.getByRole("checkbox", { name: /Include memory/ }) as HTMLInputElement).disabled).toBe(true);
    expect(screen.getByText("A stopped VM has no memory to save.")).toBeTruthy();
    unmount();
    render(<SnapshotsTab vm={{ ...VM, state: "paused" }} />);
    expect((screen.getByRole("button", { name: "Take snapshot" }) as HTMLButtonElement).disabled).toBe(true);
  });

  it("posts the snapshot and shows a refusal with its hint", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return new Response(JSON.stringify({ code: "snapshot_refused", detail: "a running UEFI VM", hint: "stop it first", status: 409 }),
                          { status: 409 });
    });
    render(<SnapshotsTab vm={VM} />);
    fireEvent.change(screen.getByLabelText("Name"), { target: { value: "pre-fix" } });
    fireEvent.click(screen.getByRole("checkbox", { name: /Include memory/ }));
    fireEvent.click(screen.getByRole("button", { name: "Take snapshot" }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("snapshot_refused"));
    expect(screen.getByRole("alert").textContent).toContain("stop it first");
    expect(bodies).toEqual([{ name: "pre-fix", memory: true }]);
  });
});

describe("the Hardware tab", () => {
  it("shows the disks and the media drive, and the ceilings of a running VM", () => {
    render(<HardwareTab vm={VM} />);
    expect(document.querySelector("#disks tr[data-disk='data']")?.textContent).toContain("sdf (scsi)");
    expect(document.getElementById("media")?.textContent).toContain("tools.iso");
    expect(screen.getByText(/vCPUs up to 4 and memory up to 4 GiB \(in steps of 128 MiB\)/)).toBeTruthy();
  });

  it("sends only the changed figures", async () => {
    const calls: { method: string; body: unknown }[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      calls.push({ method: String(init.method), body: JSON.parse(String(init.body)) });
      return new Response(JSON.stringify({ ...VM, disk_gib: 30 }), { status: 202 });
    });
    render(<HardwareTab vm={VM} />);
    fireEvent.change(screen.getByLabelText("Disk (GiB)"), { target: { value: "30" } });
    fireEvent.click(screen.getByRole("button", { name: "Resize" }));
    await waitFor(() => expect(screen.getByText(/the disk grows live/)).toBeTruthy());
    expect(calls).toEqual([{ method: "PATCH", body: { disk_gib: 30 } }]);
  });
});

describe("the Clone & publish tab", () => {
  it("offers linked clones of any VM (full by default unless a template), and a template only of a stopped VM", () => {
    const { unmount } = render(<ClonePublishTab vm={VM} />);
    const linked = screen.getByRole("checkbox", { name: /Linked/ }) as HTMLInputElement;
    expect(linked.disabled).toBe(false);
    expect(linked.checked).toBe(false);
    expect(document.querySelector("#clone-linked-hint")).toBeNull();
    fireEvent.click(linked);
    fireEvent.change(screen.getByLabelText("Name of the clone"), { target: { value: "web-2" } });
    expect(document.querySelector("#clone-linked-hint")?.textContent).toContain("snapshot clone-web-2 is taken now");
    expect((screen.getByRole("button", { name: "Make template" }) as HTMLButtonElement).disabled).toBe(true);
    expect(document.querySelector("#template-blocked")?.textContent).toContain("stop it first");
    unmount();
    render(<ClonePublishTab vm={{ ...VM, state: "stopped", template: true }} />);
    const templateLinked = screen.getByRole("checkbox", { name: /Linked/ }) as HTMLInputElement;
    expect(templateLinked.disabled).toBe(false);
    expect(templateLinked.checked).toBe(true);
    expect(document.querySelector("#template")?.getAttribute("data-template")).toBe("true");
    expect(document.querySelector("#clone-linked-hint")?.textContent).toBe("Based on the template's disk.");
  });

  it("sends a linked clone of a running VM at the chosen snapshot", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return new Response(JSON.stringify({ ...VM, id: "vm-2", name: "web-2", state: "pending",
                                           clone_of: { vm_id: VM.id, snapshot_id: "s-1", linked: true } }), { status: 202 });
    });
    const snap = { id: "s-1", name: "before", state: "ready", created_at: "2026-01-01T00:00:00Z" };
    render(<ClonePublishTab vm={{ ...VM, snapshots: [snap] as VmRecord["snapshots"] }} />);
    fireEvent.change(screen.getByLabelText("Name of the clone"), { target: { value: "web-2" } });
    fireEvent.click(screen.getByRole("checkbox", { name: /Linked/ }));
    fireEvent.change(screen.getByLabelText("From", { selector: "#clone-from" }), { target: { value: "s-1" } });
    expect(document.querySelector("#clone-linked-hint")?.textContent).toContain("Based on snapshot before");
    fireEvent.click(screen.getByRole("button", { name: "Clone" }));
    await waitFor(() => expect(bodies).toEqual([{ name: "web-2", linked: true, snapshot: "s-1" }]));
  });

  it("generalizes a publish by default only with a connected guest agent", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return new Response(JSON.stringify({ id: "img-9", name: "tpl", state: "queued", labels: { generalized: "true" } }),
                          { status: 202 });
    });
    const { unmount } = render(<ClonePublishTab vm={VM} />);
    expect((screen.getByRole("checkbox", { name: /Generalize first/ }) as HTMLInputElement).disabled).toBe(true);
    expect(document.querySelector("#publish-not-generalized")?.textContent).toContain("guest agent");
    unmount();
    render(<ClonePublishTab vm={{ ...VM, guest: { agent: { connected: true } } }} />);
    expect((screen.getByRole("checkbox", { name: /Generalize first/ }) as HTMLInputElement).checked).toBe(true);
    fireEvent.change(screen.getByLabelText("Image name"), { target: { value: "tpl" } });
    fireEvent.click(screen.getByRole("button", { name: "Publish" }));
    await waitFor(() => expect(bodies).toEqual([{ name: "tpl", generalize: true }]));
  });
});
