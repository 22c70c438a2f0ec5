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
/** `remote`: a catalog entry known but not downloaded (`available` from older gateways). */
export type ImageState = NonNullable<S["ImageRecord"]["state"]>;
export type ImageRecord = Omit<S["ImageRecord"], "state"> & { state: ImageState };
export type CreateImageRequest = S["CreateImageRequest"];
export type TicketResponse = S["TicketResponse"];
export type Problem = S["Problem"];

export type NodeWarning = S["NodeWarning"];
export type NodeInfo = S["NodeInfo"];

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
