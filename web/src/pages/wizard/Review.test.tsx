import { render, screen, within } from "@testing-library/react";
import type { ImageRecord } from "../../api/types";
import { NEW_WINDOWS } from "../../lib/windows";
import { type Draft, NEW_DRAFT, type WizardContext } from "../../lib/wizard";
import { ReviewStep } from "./Review";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui";
const NOW = "2026-01-01T00:00:00Z";
const images = new Map<string, ImageRecord>([
  ["img-1", { id: "img-1", name: "ubuntu-24.04", state: "remote", format: "qcow2", created_at: NOW, updated_at: NOW }],
]);
const ctx: WizardContext = { takenNames: new Set(), images, nodes: [] };

function review(patch: Partial<Draft>) {
  const draft = { ...NEW_DRAFT, name: "web-1", imageId: "img-1", ...patch };
  render(<ReviewStep draft={draft} ctx={ctx} origin="http://gw:8080" />);
  const summary = screen.getByLabelText("Summary");
  return (label: string) => within(summary).getByText(label).nextElementSibling?.textContent;
}

describe("the Review step", () => {
  it("shows the method, the image, the SSH key count and custom config", () => {
    const value = review({ sshKeys: [KEY, KEY.replace("a@ui", "b@ui")], customConfig: true, userData: "#cloud-config\nruncmd: [ls]\n" });
    expect(value("Provisioning method")).toBe("Cloud image (automated with cloud-init)");
    expect(value("Image")).toBe("ubuntu-24.04");
    expect(value("SSH keys")).toBe("2");
    expect(value("Custom cloud-config")).toBe("yes");
    expect(value("Placement")).toBe("automatic");
    expect(screen.getByText(/Save the custom cloud-config as/)).toBeTruthy();
  });

  it("says custom config no and shows the lq command and curl call, copyable", () => {
    const value = review({ sshKeys: [], customConfig: false, node: "node-a" });
    expect(value("SSH keys")).toBe("0");
    expect(value("Custom cloud-config")).toBe("no");
    expect(value("Placement")).toBe("node node-a");
    expect(document.getElementById("review-lq")?.textContent).toBe(
      "lq vm create web-1 --image ubuntu-24.04 --cpus 1 --memory 1G --disk 10G --network user --node node-a --wait ready");
    expect(document.getElementById("review-curl")?.textContent).toContain("curl -X POST http://gw:8080/v1/vms");
    expect(screen.getByRole("button", { name: "Copy lq command" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Copy curl command" })).toBeTruthy();
  });

  it("shows the description and passes it on to the API and the lq command", () => {
    const value = review({ description: "  build box for team A " });
    expect(value("Description")).toBe("build box for team A");
    expect(document.getElementById("review-lq")?.textContent).toContain(
      "--description 'build box for team A'");
    expect(document.getElementById("review-curl")?.textContent).toContain(
      '"description":"build box for team A"');
  });

  it("says cloud-init is not used for an ISO or no boot media", () => {
    const value = review({ boot: "none", imageId: "" });
    expect(value("Provisioning method")).toBe("None (configure later)");
    expect(value("Cloud-init")).toBe("not used");
    expect(screen.queryByText("SSH keys")).toBeNull();
  });

  it("shows a Windows VM's setup and the windows.yaml its lq line needs", () => {
    const value = review({ osType: "windows", vcpus: "2", memory: "4", diskGib: "64",
                           win: { ...NEW_WINDOWS, computerName: "WEB01", adminUser: "ops", timezone: "Tokyo Standard Time" } });
    expect(value("OS family")).toBe("Windows (UEFI, TPM 2.0, Hyper-V)");
    expect(value("Computer name")).toBe("WEB01");
    expect(value("Administrator")).toBe("ops, password none");
    expect(value("Time zone")).toBe("Tokyo Standard Time");
    expect(document.getElementById("review-windows-file")?.textContent).toBe('admin_user: "ops"\n');
    const lq = document.getElementById("review-lq")?.textContent ?? "";
    expect(lq).toContain("--os-type windows --windows-computer-name WEB01 --windows-timezone 'Tokyo Standard Time' --windows windows.yaml");
    expect(lq).toMatch(/--wait running$/);
    expect(document.getElementById("review-curl")?.textContent).toContain('"windows":{"computer_name":"WEB01","admin_user":"ops"');
  });
});
