// VM lifecycle actions and the states each is legal from (mirrors libs/common/vms.py TRANSITIONS,
// so buttons are disabled exactly when the API would answer 409 illegal_transition).
import { request, seg } from "../api/client";
import type { ImageRecord, VmRecord } from "../api/types";

export type VmAction = "start" | "stop" | "force-stop" | "reboot" | "pause" | "resume" | "retry" | "delete";

const UP = ["running", "ready"];
export const LEGAL_FROM: Record<VmAction, readonly string[]> = {
  start: ["stopped", "error"],
  stop: UP,
  "force-stop": [...UP, "paused", "stopping", "starting", "rebooting", "error"],
  reboot: UP,
  pause: UP,
  resume: ["paused"],
  retry: ["error"],
  // "unknown": the node is offline; the delete is a forced one (the record goes at once)
  delete: ["pending", "creating", "starting", "running", "ready", "stopping", "stopped", "paused", "rebooting", "error",
    "unknown"],
};

export const ACTION_LABELS: Record<VmAction, string> = {
  start: "Start",
  stop: "Shut down",
  "force-stop": "Force stop",
  reboot: "Reboot",
  pause: "Pause",
  resume: "Resume",
  retry: "Retry",
  delete: "Delete",
};

export function canDo(action: VmAction, state: string): boolean {
  return LEGAL_FROM[action].includes(state);
}

export async function runAction(vm: VmRecord, action: VmAction): Promise<VmRecord> {
  const force = vm.state === "unknown" ? "?force=true" : "";
  const path = action === "delete" ? `/v1/vms/${seg(vm.id)}${force}` : `/v1/vms/${seg(vm.id)}/${action}`;
  const response = await request(action === "delete" ? "DELETE" : "POST", path);
  return (await response.json()) as VmRecord;
}

/** The VM's image as people name it (not its id); "—" for a blank-disk VM. */
export function imageName(vm: VmRecord, images: ReadonlyMap<string, ImageRecord>): string {
  if (!vm.image) return "none";
  const image = images.get(vm.image);
  if (image) return image.name;
  for (const candidate of images.values()) if (candidate.name === vm.image) return candidate.name;
  return vm.image.includes("/") ? vm.image.split("/").pop() ?? vm.image : vm.image;
}

export function isUp(state: string): boolean {
  return UP.includes(state);
}
