import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import type { VmRecord } from "../../api/types";
import { ProgressView } from "../wizard/Progress";
import { GuestCard } from "./GuestCard";
import { ExecOutput, GuestTab } from "./GuestTab";

// A record shaped as GET /v1/vms/{vm} answers for a Debian guest whose agent is connected
// (fields as libs/common/vms.GuestInfo and the node's guest_agent.py fill them).
const GUEST_VM: VmRecord = {
  id: "0b6c3f5e-0000-4000-8000-000000000001", name: "web-1", state: "ready", node: "node-a", image: "img-1",
  vcpus: 1, memory_mib: 1024, disk_gib: 10, created_at: "2026-01-01T10:00:00Z", updated_at: "2026-01-01T10:00:48Z",
  cloud_init: { user: "admin" },
  guest: {
    ready_at: "2026-01-01T10:00:47Z", boot_seconds: 46.2, addresses: ["10.0.2.15"],
    ip_addresses: [
      { address: "10.0.2.15", prefix: 24, interface: "enp0s10", source: "agent" },
      { address: "fec0::5054:ff:fe12:3456", prefix: 64, interface: "enp0s10", source: "agent" },
      { address: "10.0.2.15", source: "serial", interface: "enp0s10" },
    ],
    agent: { connected: true, version: "7.2.0", commands: ["guest-exec", "guest-exec-status", "guest-file-open", "guest-ping"] },
    os: { name: "Debian GNU/Linux", version: "12 (bookworm)", kernel: "6.1.0-13-amd64", hostname: "web-1" },
    users: ["admin"],
    filesystems: [
      { mount: "/", type: "ext4", used_bytes: 1_288_490_188, total_bytes: 10_213_466_112 },
      { mount: "/boot/efi", type: "vfat", used_bytes: 6_184_960, total_bytes: 129_718_272 },
    ],
    info_at: "2026-01-01T10:00:50Z",
    phase: "ready",
    phases: { defined: "2026-01-01T10:00:01Z", booting: "2026-01-01T10:00:01.400Z", network: "2026-01-01T10:00:22Z",
              cloud_init_done: "2026-01-01T10:00:45Z", ssh: "2026-01-01T10:00:46Z", ready: "2026-01-01T10:00:47Z" },
  },
  stopped_by: "agent",
};

describe("the Guest card", () => {
  it("shows the agent, the OS, addresses with their sources, file systems and the timed phases", () => {
    render(<GuestCard vm={GUEST_VM} />);
    expect(screen.getByText("agent connected (7.2.0)")).toBeTruthy();
    expect(document.getElementById("guest-os")?.textContent).toBe("Debian GNU/Linux 12 (bookworm)");
    expect(screen.getByText("6.1.0-13-amd64")).toBeTruthy();
    expect(screen.getByText("guest agent shutdown")).toBeTruthy();
    const rows = within(document.getElementById("guest-addresses") as HTMLElement).getAllByRole("row").slice(1);
    expect(rows.map((r) => r.textContent)).toEqual([
      "10.0.2.15/24enp0s10guest agent", "fec0::5054:ff:fe12:3456/64enp0s10guest agent", "10.0.2.15enp0s10serial log"]);
    const root = screen.getByRole("meter", { name: "/ (ext4)" });
    expect(root.getAttribute("aria-valuetext")).toBe("1.2 GiB of 9.5 GiB used");
    const phases = document.getElementById("guest-phases") as HTMLElement;
    expect(phases.getAttribute("data-phase")).toBe("ready");
    expect(within(phases).getAllByRole("listitem").map((li) => li.getAttribute("data-phase"))).toEqual(
      ["defined", "booting", "network", "cloud_init_done", "ssh", "ready"]);
    expect(phases.querySelector("[data-phase='network'] .phase-time")?.textContent).toMatch(/\+21\.0 s$/);
  });

  it("says what is missing without an agent", () => {
    render(<GuestCard vm={{ ...GUEST_VM, guest: { addresses: ["10.0.2.15"] }, stopped_by: "" }} />);
    expect(screen.getByText("agent not connected")).toBeTruthy();
    expect(screen.getByText(/knows the guest only from its serial log/)).toBeTruthy();
    expect(screen.getByText("serial log")).toBeTruthy();
    expect(screen.getByText("None recorded yet.")).toBeTruthy();
  });
});

describe("the create progress view", () => {
  it("shows the guest's phase and the time it took to be ready", () => {
    render(<ProgressView vm={GUEST_VM} withCloudInit onAnother={() => undefined} />);
    const elapsed = document.getElementById("create-elapsed") as HTMLElement;
    expect(elapsed.textContent).toBe("Guest phase: Ready · ready 47 s after Create");
    expect(document.getElementById("create-phases")?.getAttribute("data-phase")).toBe("ready");
  });

  it("counts the time since Create while the guest is on its way", () => {
    const created = new Date(Date.now() - 12_000).toISOString();
    render(<ProgressView vm={{ ...GUEST_VM, state: "running", created_at: created,
                               guest: { phase: "booting", phases: { defined: created, booting: created } } }}
                         withCloudInit onAnother={() => undefined} />);
    expect(document.getElementById("create-elapsed")?.textContent).toMatch(/^Guest phase: Booting · 1[234] s since Create$/);
  });
});

describe("the Guest agent tab", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows a command's exit code, output and errors", () => {
    render(<ExecOutput result={{ exit_code: 2, stdout: "web-1\n", stderr: "ls: cannot access 'x'\n", truncated: true, duration_s: 0.31 }} />);
    expect(screen.getByRole("status").textContent).toMatch(/^exit code 2 · 0.31 s · output truncated/);
    expect(screen.getByLabelText("Standard output").textContent).toBe("web-1\n");
    expect(screen.getByLabelText("Standard error").textContent).toBe("ls: cannot access 'x'\n");
  });

  it("sends the typed command through sh -c and shows a 409 with its hint", async () => {
    const calls: { url: string; body: unknown }[] = [];
    vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
      calls.push({ url, body: JSON.parse(String(init.body)) });
      return new Response(JSON.stringify({ code: "agent_unavailable", detail: "the guest agent of web-1 is not connected",
                                           hint: "wait until the VM has booted", status: 409 }),
                          { status: 409, headers: { "Content-Type": "application/problem+json" } });
    });
    render(<GuestTab vm={{ ...GUEST_VM, guest: {} }} />);
    fireEvent.change(screen.getByLabelText("Command"), { target: { value: "cat /etc/hostname | tr a-z A-Z" } });
    fireEvent.click(screen.getByRole("button", { name: "Run" }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("agent_unavailable"));
    expect(screen.getByRole("alert").textContent).toContain("wait until the VM has booted");
    expect(calls).toEqual([{ url: `/v1/vms/${GUEST_VM.id}/exec`,
                             body: { command: ["sh", "-c", "cat /etc/hostname | tr a-z A-Z"], timeout_s: 30 } }]);
  });

  it("refuses an unclosed quote and a relative path before asking the API", () => {
    render(<GuestTab vm={GUEST_VM} />);
    fireEvent.click(screen.getByLabelText(/Through the shell/));
    fireEvent.change(screen.getByLabelText("Command"), { target: { value: "echo 'open" } });
    fireEvent.click(screen.getByRole("button", { name: "Run" }));
    expect(screen.getByText("The command cannot be read: the single quote is not closed.")).toBeTruthy();
    fireEvent.change(screen.getByLabelText("Path in the guest"), { target: { value: "notes.txt" } });
    fireEvent.click(screen.getByRole("button", { name: "Copy out" }));
    expect(screen.getByText(/An absolute path in the guest/)).toBeTruthy();
  });
});
