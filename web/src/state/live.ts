// The app's live view of the cluster: lists read once per (re)connection, then kept current by
// the event stream. Pages read it with useLive(); nothing polls VMs (nodes are polled because
// heartbeats send no event).
import { useSyncExternalStore } from "react";
import { getJson, seg } from "../api/client";
import { EventStream, type StreamState } from "../api/sse";
import { type ImageRecord, type LqEvent, type NodeInfo, normImage, normVm, type VmRecord } from "../api/types";

const NODE_POLL_MS = 5000;

/** Every item of a paged list (`next_cursor`), as the API answers it. */
async function allPages<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    const page = await getJson<{ items: T[]; next_cursor?: string }>(`${path}${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}
const MAX_EVENTS = 500;
const REFRESH_COALESCE_MS = 150;

export interface LiveSnapshot {
  vms: ReadonlyMap<string, VmRecord>;
  images: ReadonlyMap<string, ImageRecord>;
  nodes: readonly NodeInfo[];
  /** Newest last. */
  events: readonly LqEvent[];
  stream: StreamState;
  loaded: boolean;
  /** The latest state change worth announcing to screen readers. */
  announcement: string;
}

const EMPTY: LiveSnapshot = {
  vms: new Map(), images: new Map(), nodes: [], events: [], stream: "closed", loaded: false,
  announcement: "",
};

export class LiveStore {
  private snapshot: LiveSnapshot = EMPTY;
  private readonly listeners = new Set<() => void>();
  private stream: EventStream | null = null;
  private nodeTimer: ReturnType<typeof setInterval> | undefined;
  private readonly pendingVm = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly pendingImage = new Map<string, ReturnType<typeof setTimeout>>();
  // VM ids never come back once deleted: an answer that was in flight when vm.deleted arrived
  // must not put the VM back.
  private readonly deletedVms = new Set<string>();

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): LiveSnapshot => this.snapshot;

  private set(patch: Partial<LiveSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const listener of this.listeners) listener();
  }

  start(): void {
    this.stop();
    this.stream = new EventStream({
      onEvent: (event) => this.apply(event),
      onState: (stream) => this.set({ stream }),
      // Events missed while disconnected are not replayed into lists: read them again.
      onOpen: () => void this.refreshAll(),
    });
    this.stream.start();
    this.nodeTimer = setInterval(() => void this.refreshNodes(), NODE_POLL_MS);
  }

  stop(): void {
    this.stream?.stop();
    this.stream = null;
    clearInterval(this.nodeTimer);
  }

  async refreshAll(): Promise<void> {
    await Promise.allSettled([this.refreshVms(), this.refreshImages(), this.refreshNodes()]);
    this.set({ loaded: true });
  }

  async refreshVms(): Promise<void> {
    const items = await allPages<VmRecord>("/v1/vms");
    const alive = items.filter((vm) => !this.deletedVms.has(vm.id));
    this.set({ vms: new Map(alive.map((vm) => [vm.id, normVm(vm)])) });
  }

  async refreshImages(): Promise<void> {
    const list = await getJson<{ images?: ImageRecord[] }>("/v1/images");
    this.set({ images: new Map((list.images ?? []).map((image) => [image.id, normImage(image)])) });
  }

  async refreshNodes(): Promise<void> {
    try {
      const before = new Map(this.snapshot.nodes.map((n) => [n.id, n.status]));
      const nodes = await allPages<NodeInfo>("/v1/nodes");
      this.set({ nodes });
      // The API answers a VM of an offline node as `unknown` (no event says so: a node that
      // died publishes nothing): re-read the VMs of every node whose status changed.
      const changed = new Set(nodes.filter((n) => before.has(n.id) && before.get(n.id) !== n.status).map((n) => n.id));
      for (const id of before.keys()) if (!nodes.some((n) => n.id === id)) changed.add(id);
      for (const vm of this.snapshot.vms.values()) if (vm.node && changed.has(vm.node)) this.refreshVm(vm.id);
    } catch {
      // a failed poll keeps the last view; the next one retries (401s reopen sign-in)
    }
  }

  putVm(vm: VmRecord): void {
    if (this.deletedVms.has(vm.id)) return;
    const vms = new Map(this.snapshot.vms);
    vms.set(vm.id, normVm(vm));
    this.set({ vms });
  }

  putImage(image: ImageRecord): void {
    const images = new Map(this.snapshot.images);
    images.set(image.id, normImage(image));
    this.set({ images });
  }

  dropImage(id: string): void {
    const images = new Map(this.snapshot.images);
    images.delete(id);
    this.set({ images });
  }

  /** Re-read one VM soon; several events in a burst make one GET. */
  refreshVm(id: string): void {
    if (this.pendingVm.has(id)) return;
    this.pendingVm.set(id, setTimeout(async () => {
      this.pendingVm.delete(id);
      try {
        this.putVm(await getJson<VmRecord>(`/v1/vms/${seg(id)}`));
      } catch {
        // gone meanwhile: vm.deleted removes it
      }
    }, REFRESH_COALESCE_MS));
  }

  refreshImage(id: string): void {
    if (this.pendingImage.has(id)) return;
    this.pendingImage.set(id, setTimeout(async () => {
      this.pendingImage.delete(id);
      try {
        this.putImage(await getJson<ImageRecord>(`/v1/images/${seg(id)}`));
      } catch {
        this.dropImage(id);
      }
    }, REFRESH_COALESCE_MS));
  }

  private apply(event: LqEvent): void {
    const events = [...this.snapshot.events, event].slice(-MAX_EVENTS);
    const patch: Partial<LiveSnapshot> = { events };
    const vmId = event.vm_id;
    switch (event.type) {
      case "vm.state_changed": {
        const current = vmId ? this.snapshot.vms.get(vmId) : undefined;
        if (current && event.state) {
          const vms = new Map(this.snapshot.vms);
          vms.set(current.id, { ...current, state: event.state as VmRecord["state"],
                                error: event.error ?? current.error });
          patch.vms = vms;
        }
        const name = event.name || current?.name || vmId;
        patch.announcement = `${name} is now ${event.state}`;
        if (vmId) this.refreshVm(vmId);
        break;
      }
      case "vm.guest_ready":
        patch.announcement = `${event.name || vmId} is ready`;
        if (vmId) this.refreshVm(vmId);
        break;
      case "vm.action_failed":
        patch.announcement = `${event.name || vmId}: ${event.action} failed: ${event.error?.message ?? ""}`;
        if (vmId) this.refreshVm(vmId);
        break;
      case "vm.deleted": {
        if (vmId) {
          this.deletedVms.add(vmId);
          const vms = new Map(this.snapshot.vms);
          vms.delete(vmId);
          patch.vms = vms;
        }
        patch.announcement = `${event.name || vmId} was deleted`;
        break;
      }
      case "image.progress": {
        const image = event.image_id ? this.snapshot.images.get(event.image_id) : undefined;
        // A node filling its cache reports too; the record's own progress is the library's.
        if (image && !event.node) {
          this.putImage({ ...image, bytes_done: event.bytes_done ?? image.bytes_done,
                          bytes_total: event.bytes_total ?? image.bytes_total });
        }
        // VMs waiting for this image show the download's progress (kept in their records).
        for (const vm of this.snapshot.vms.values()) {
          if (vm.state === "pending" && vm.image === event.image_id) this.refreshVm(vm.id);
        }
        break;
      }
      case "image.state_changed":
        if (event.image_id) this.refreshImage(event.image_id);
        patch.announcement = `image ${event.name || event.image_id} is now ${event.state}`;
        break;
      case "node.state_changed":
        void this.refreshNodes();
        break;
      case "vm.phase":
        patch.announcement = `${event.name || vmId} reached ${String(event.phase ?? "").replace(/_/g, " ")}`;
        if (vmId) this.refreshVm(vmId);
        break;
      default:
        // Every other VM event (agent, addresses, snapshots, devices, clones, publishing)
        // changed the record: re-read it.
        if (vmId && event.type.startsWith("vm.")) this.refreshVm(vmId);
        break;
    }
    this.set(patch);
  }
}

export const live = new LiveStore();

export function useLive(): LiveSnapshot {
  return useSyncExternalStore(live.subscribe, live.getSnapshot);
}

/** A VM by id or name. */
export function findVm(snapshot: LiveSnapshot, ref: string): VmRecord | undefined {
  const byId = snapshot.vms.get(ref);
  if (byId) return byId;
  for (const vm of snapshot.vms.values()) if (vm.name === ref) return vm;
  return undefined;
}
