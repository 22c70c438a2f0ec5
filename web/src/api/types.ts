// Names for the generated OpenAPI types (schema.d.ts comes from openapi.json: `npm run gen:api`).
import type { components } from "./schema";

type S = components["schemas"];

// Records are sent with defaults omitted (msgspec omit_defaults): a `pending` VM has no `state`
// in its JSON. normVm/normImage fill them in where records enter the app.
export type VmState = NonNullable<S["VmRecord"]["state"]>;
export type VmRecord = Omit<S["VmRecord"], "state"> & { state: VmState };
export type CreateVmRequest = S["CreateVmRequest"];
export type CloudInitRequest = S["CloudInitRequest"];
export type NetworkRequest = S["NetworkRequest"];
/** Image states: the API's, plus `remote` (a catalog entry not downloaded; older: `available`). */
export type ImageState = NonNullable<S["ImageRecord"]["state"]> | "remote";
export type ImageRecord = Omit<S["ImageRecord"], "state"> & { state: ImageState };
export type CreateImageRequest = S["CreateImageRequest"];
export type TicketResponse = S["TicketResponse"];
export type Problem = S["Problem"];

/** A node warning (capacity over-commit, missing KVM, ...) as the API reports it. */
export interface NodeWarning {
  code: string;
  message: string;
  hint?: string;
}

// Fields the node listing gains with over-commit ratios; optional so the UI also reads an older
// gateway's answer (they are then derived from the physical figures).
export type NodeInfo = S["NodeInfo"] & {
  warnings?: NodeWarning[];
  cpu_allocation_ratio?: number;
  memory_allocation_ratio?: number;
  vcpus_capacity?: number;
  memory_mib_capacity?: number;
};

export type NetworkMode = NonNullable<NetworkRequest["mode"]>;

/** One event from GET /v1/events (its payload's `type` is the SSE event name). */
export interface LqEvent {
  id: string;
  type: string;
  time?: string;
  vm_id?: string;
  image_id?: string;
  node?: string;
  name?: string;
  state?: string;
  previous?: string | null;
  reason?: string;
  online?: boolean;
  action?: string;
  error?: { code: string; message: string; hint?: string } | null;
  bytes_done?: number;
  bytes_total?: number | null;
  bytes_per_second?: number;
  guest?: VmRecord["guest"];
  session_id?: string;
  close_code?: number;
  [key: string]: unknown;
}

export function normVm(raw: S["VmRecord"] | VmRecord): VmRecord {
  return { ...raw, state: raw.state ?? "pending" };
}

export function normImage(raw: S["ImageRecord"] | ImageRecord): ImageRecord {
  return { ...raw, state: raw.state ?? "queued" };
}
