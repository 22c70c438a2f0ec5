import { canDo } from "./vmActions";

describe("canDo", () => {
  it("offers Retry only for a VM in error, as the API allows", () => {
    expect(canDo("retry", "error")).toBe(true);
    for (const state of ["pending", "running", "stopped", "unknown"]) expect(canDo("retry", state)).toBe(false);
  });

  it("lets a VM whose node is offline be deleted (a forced delete), but not acted on", () => {
    expect(canDo("delete", "unknown")).toBe(true);
    for (const action of ["start", "stop", "force-stop", "reboot", "pause", "resume"] as const) {
      expect(canDo(action, "unknown")).toBe(false);
    }
    expect(canDo("delete", "deleting")).toBe(false);
  });
});
