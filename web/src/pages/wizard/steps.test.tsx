import { fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import type { ImageRecord } from "../../api/types";
import { type Draft, NEW_DRAFT, validateStep, type WizardContext } from "../../lib/wizard";
import { BasicsStep, BootStep, CloudInitStep } from "./steps";

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0NxP4T8vYk3X2QbW7Lr6m1JwZ9yA8cE5dF0gH1iJk b@ui";
const NOW = "2026-01-01T00:00:00Z";
const images = new Map<string, ImageRecord>([
  ["img-1", { id: "img-1", name: "debian-12", state: "active", format: "qcow2", min_disk_gib: 20, virtual_size: 2 ** 31, created_at: NOW, updated_at: NOW }],
  ["iso-1", { id: "iso-1", name: "installer", state: "active", format: "iso", created_at: NOW, updated_at: NOW }],
]);
const ctx: WizardContext = { takenNames: new Set(["taken"]), images, nodes: [] };

/** A step with its draft kept in state and its live errors shown, as the wizard does. */
function Harness({ step, initial, onDraft }: { step: "basics" | "boot" | "cloud-init"; initial: Partial<Draft>; onDraft?: (d: Draft) => void }) {
  const [draft, setDraft] = useState<Draft>({ ...NEW_DRAFT, ...initial });
  const update = (patch: Partial<Draft>) => setDraft((d) => {
    const next = { ...d, ...patch };
    onDraft?.(next);
    return next;
  });
  const errors = validateStep(step, draft, ctx);
  const props = { draft, update, errors, ctx };
  if (step === "basics") return <BasicsStep {...props} />;
  if (step === "boot") return <BootStep {...props} />;
  return <CloudInitStep {...props} configError={null} />;
}

describe("Basics", () => {
  it("validates the name as it is typed", () => {
    render(<Harness step="basics" initial={{}} />);
    const input = screen.getByLabelText("Name");
    fireEvent.change(input, { target: { value: "Web_1" } });
    expect(screen.getByRole("alert").textContent).toMatch(/Lower-case letters/);
    fireEvent.change(input, { target: { value: "taken" } });
    expect(screen.getByRole("alert").textContent).toBe("A VM named 'taken' exists already.");
    fireEvent.change(input, { target: { value: "web-1" } });
    expect(screen.queryByRole("alert")).toBeNull();
  });
});

describe("Boot media", () => {
  it("offers three cards and lists images of the chosen kind", () => {
    render(<Harness step="boot" initial={{ diskGib: "10" }} />);
    expect(screen.getAllByRole("radio", { name: /Cloud Image|ISO Image|None/ })).toHaveLength(3);
    expect(screen.getByRole("radio", { name: "debian-12" })).toBeTruthy();
    expect(screen.queryByRole("radio", { name: "installer" })).toBeNull();
    fireEvent.click(screen.getByRole("radio", { name: /ISO Image/ }));
    expect(screen.getByRole("radio", { name: "installer" })).toBeTruthy();
    expect(screen.queryByRole("radio", { name: "debian-12" })).toBeNull();
  });

  it("raises the disk to the image's minimum when the image is picked", () => {
    let last: Draft | undefined;
    render(<Harness step="boot" initial={{ diskGib: "10" }} onDraft={(d) => { last = d; }} />);
    fireEvent.click(screen.getByRole("radio", { name: "debian-12" }));
    expect(last?.imageId).toBe("img-1");
    expect(last?.diskGib).toBe("20");
  });
});

describe("Cloud-init", () => {
  it("adds keys one by one, refuses a bad one with its reason, removes one", () => {
    let last: Draft | undefined;
    render(<Harness step="cloud-init" initial={{ boot: "cloud" }} onDraft={(d) => { last = d; }} />);
    expect(screen.getByText(/No SSH key and no password/)).toBeTruthy();
    const input = screen.getByLabelText("Add a public key");
    const add = screen.getByRole("button", { name: "Add key" });
    fireEvent.change(input, { target: { value: "ssh-ed25519 AAAA" } });
    fireEvent.click(add);
    expect(document.getElementById("ci-new-key-error")?.textContent).toBe("the key data is too short");
    for (const key of [KEY_A, KEY_B]) {
      fireEvent.change(input, { target: { value: key } });
      fireEvent.click(add);
    }
    expect(screen.getByText("SSH public keys (2)")).toBeTruthy();
    expect(screen.queryByText(/No SSH key and no password/)).toBeNull();
    fireEvent.change(input, { target: { value: KEY_B } });
    fireEvent.click(add);
    expect(document.getElementById("ci-new-key-error")?.textContent).toBe("this key is in the list already");
    fireEvent.click(screen.getByRole("button", { name: "Remove SSH key 1" }));
    expect(screen.getByText("SSH public keys (1)")).toBeTruthy();
    expect(last?.sshKeys).toEqual([KEY_B]);
  });

  it("shows only the network for ISO and None", () => {
    render(<Harness step="cloud-init" initial={{ boot: "none" }} />);
    expect(screen.getByText(/Cloud-init is not used/)).toBeTruthy();
    expect(screen.queryByLabelText("Add a public key")).toBeNull();
    expect(screen.getByLabelText("Network")).toBeTruthy();
  });

  it("highlights the custom cloud-config and marks the server's error at its line", async () => {
    const { CodeEditor } = await import("../../components/CodeEditor");
    render(<CodeEditor id="ud" label="Config" value={"#cloud-config\nruncmd: [ls\nx: 1\n"} onChange={() => undefined}
                       error={{ line: 3, column: 2, message: "expected ',' or ']'" }} />);
    const marked = document.querySelector(".code-line.error");
    expect(marked?.getAttribute("data-line")).toBe("3");
    expect(marked?.textContent).toContain("column 2: expected ',' or ']'");
    expect(document.querySelector(".code-line[data-line='1'] .tok-directive")?.textContent).toBe("#cloud-config");
    expect(document.querySelector(".code-line[data-line='2'] .tok-key")?.textContent).toBe("runcmd");
    expect(screen.getByRole("alert").textContent).toBe("Line 3, column 2: expected ',' or ']'");
    expect(screen.getByLabelText("Config").getAttribute("aria-invalid")).toBe("true");
  });
});
