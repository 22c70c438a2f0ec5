import { fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import type { ImageRecord } from "../../api/types";
import { type Draft, NEW_DRAFT, validateStep, type WizardContext } from "../../lib/wizard";
import { BootStep, CloudInitStep } from "./steps";

const NOW = "2026-01-01T00:00:00Z";
const images = new Map<string, ImageRecord>([
  ["win-1", { id: "win-1", name: "win-server", state: "active", format: "qcow2", os: "windows-server", version: "2022",
              created_at: NOW, updated_at: NOW }],
  ["deb-1", { id: "deb-1", name: "debian-12", state: "active", format: "qcow2", os: "debian", created_at: NOW, updated_at: NOW }],
  ["raw-1", { id: "raw-1", name: "mystery", state: "active", format: "qcow2", created_at: NOW, updated_at: NOW }],
]);
const ctx: WizardContext = { takenNames: new Set(), images, nodes: [] };

function Harness({ step, initial, onDraft }: { step: "boot" | "cloud-init"; initial: Partial<Draft>; onDraft?: (d: Draft) => void }) {
  const [draft, setDraft] = useState<Draft>({ ...NEW_DRAFT, name: "web-1", ...initial });
  const update = (patch: Partial<Draft>) => setDraft((d) => {
    const next = { ...d, ...patch };
    onDraft?.(next);
    return next;
  });
  const props = { draft, update, errors: validateStep(step, draft, ctx), ctx };
  return step === "boot" ? <BootStep {...props} /> : <CloudInitStep {...props} configError={null} />;
}

describe("the Boot media step's OS family", () => {
  it("follows a Windows image and raises the hardware to Windows' minimums, saying so", () => {
    let last: Draft | undefined;
    render(<Harness step="boot" initial={{ vcpus: "1", memory: "1", diskGib: "10" }} onDraft={(d) => { last = d; }} />);
    expect((screen.getByRole("radio", { name: /^Linux/ }) as HTMLInputElement).checked).toBe(true);
    fireEvent.click(screen.getByRole("radio", { name: "win-server" }));
    expect(last).toMatchObject({ osType: "windows", vcpus: "2", memory: "4", memoryUnit: "GiB", diskGib: "64" });
    expect(last?.win.version).toBe("2k22");
    expect((screen.getByRole("radio", { name: /^Windows/ }) as HTMLInputElement).checked).toBe(true);
    expect(screen.getByText(/Windows needs at least 2 vCPUs, 4 GiB of memory and a 64 GiB disk/)).toBeTruthy();
    expect(screen.getByText("Raised to: 2 vCPUs, 4 GiB of memory, a 64 GiB disk.")).toBeTruthy();
    // A Linux image turns it back; an image that says nothing keeps the choice.
    fireEvent.click(screen.getByRole("radio", { name: "debian-12" }));
    expect(last?.osType).toBe("linux");
    fireEvent.click(screen.getByRole("radio", { name: /^Windows/ }));
    fireEvent.click(screen.getByRole("radio", { name: "mystery" }));
    expect(last?.osType).toBe("windows");
  });
});

describe("the Windows setup step", () => {
  it("checks the computer name's NetBIOS rule as it is typed, and the VM name it defaults to", () => {
    render(<Harness step="cloud-init" initial={{ name: "a-very-long-vm-name", osType: "windows", imageId: "win-1" }} />);
    expect(screen.getByText(/The VM name 'a-very-long-vm-name' \(the default computer name\) is 19 characters/)).toBeTruthy();
    const input = screen.getByLabelText("Computer name");
    fireEvent.change(input, { target: { value: "WEB_01" } });
    expect(screen.getByText("The computer name may hold only letters, digits and '-'.")).toBeTruthy();
    fireEvent.change(input, { target: { value: "WEB-01" } });
    expect(screen.queryByText(/computer name/i, { selector: ".field-error" })).toBeNull();
    // No Linux user or SSH keys for Windows; the password warning until one is given.
    expect(screen.queryByLabelText("Default user")).toBeNull();
    expect(screen.getByText(/No administrator password/)).toBeTruthy();
    fireEvent.change(screen.getByLabelText("Administrator password (optional)"), { target: { value: "pw" } });
    expect(screen.queryByText(/No administrator password/)).toBeNull();
    fireEvent.change(screen.getByLabelText("Product key (optional)"), { target: { value: "aaaaa-bbbbb-ccccc-ddddd-eeeee" } });
    expect((screen.getByLabelText("Product key (optional)") as HTMLInputElement).value).toBe("AAAAA-BBBBB-CCCCC-DDDDD-EEEEE");
    expect(screen.getByLabelText("Seed format")).toBeTruthy(); // cloudbase-init may read a config drive
  });

  it("offers the seed format for Linux cloud images", () => {
    let last: Draft | undefined;
    render(<Harness step="cloud-init" initial={{ imageId: "deb-1" }} onDraft={(d) => { last = d; }} />);
    fireEvent.change(screen.getByLabelText("Seed format"), { target: { value: "configdrive" } });
    expect(last?.datasource).toBe("configdrive");
  });
});
