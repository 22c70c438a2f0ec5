// Resize a VM, add and remove extra disks, insert and eject an ISO (docs/day2.md): each a 202
// whose outcome the node reports with an event, shown in the section's activity list.
import { type FormEvent, useState } from "react";
import { seg, sendJson } from "../../api/client";
import type { VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { Field, ProblemLine, StateBadge } from "../../components/bits";
import {
  ceilings, DEVICE_STATES, dnsLabelProblem, isUp, MAX_EXTRA_DISKS, MEMORY_STEP_MIB, type ResizeDraft,
  resizeDraftOf, resizeRequest,
} from "../../lib/day2";
import { mib } from "../../lib/format";
import { live, useLive } from "../../state/live";
import { Activity } from "./Activity";
import { useAction } from "./useAction";

/** Runs one device request: busy while it runs, the record it answers put in the store. */
function useDeviceCall(vm: VmRecord) {
  const { busy, problem, clearProblem, run } = useAction();
  const call = (method: string, path: string, body?: unknown): Promise<boolean> =>
    run(async () => live.putVm(await sendJson<VmRecord>(method, `/v1/vms/${seg(vm.id)}${path}`, body)));
  return { busy, problem, clearProblem, call };
}

function stateNote(vm: VmRecord): string {
  return DEVICE_STATES.includes(vm.state) ? "" : `${vm.name} is ${vm.state}: devices change while it is running or stopped.`;
}

export function HardwareTab({ vm }: { vm: VmRecord }) {
  return (
    <div className="overview-grid hardware-tab">
      <section className="card" aria-labelledby="resize-title">
        <h2 id="resize-title">Resize</h2>
        <Resize vm={vm} />
      </section>
      <section className="card" aria-labelledby="disks-title">
        <h2 id="disks-title">Extra disks ({vm.disks?.length ?? 0})</h2>
        <Disks vm={vm} />
        <h2 id="media-title">ISO media</h2>
        <Media vm={vm} />
        <h3>Activity</h3>
        <Activity vm={vm} section="hardware" />
      </section>
    </div>
  );
}

function Resize({ vm }: { vm: VmRecord }) {
  const [draft, setDraft] = useState<ResizeDraft>(() => resizeDraftOf(vm));
  const [tried, setTried] = useState(false);
  const [done, setDone] = useState("");
  const { busy, problem, clearProblem, call } = useDeviceCall(vm);
  const { body, errors } = resizeRequest(vm, draft);
  const shown = tried ? errors : {};
  const max = ceilings(vm);
  const up = isUp(vm);
  const change = (patch: Partial<ResizeDraft>) => {
    setDraft((d) => ({ ...d, ...patch }));
    setDone("");
    clearProblem();
  };
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (Object.keys(errors).length) return;
    if (Object.keys(body).length === 0) {
      setDone("Nothing to change.");
      return;
    }
    if (await call("PATCH", "", body)) {
      setTried(false);
      setDone(up ? "Asked: vCPUs and memory are hot-plugged, the disk grows live." : "Asked: applied when the VM next starts.");
    }
  };
  return (
    <form onSubmit={(e) => void submit(e)} noValidate>
      {stateNote(vm) && <p className="warning" role="status">{stateNote(vm)}</p>}
      <p className="muted">Now {vm.vcpus} vCPUs, {mib(vm.memory_mib)}, a {vm.disk_gib} GiB disk.{" "}
        {up ? `Running: vCPUs up to ${max.vcpus} and memory up to ${mib(max.memoryMib)} (in steps of ${MEMORY_STEP_MIB} MiB) are hot-plugged; more needs a stop.`
          : "Stopped: the new size applies at the next start."} A disk only grows.</p>
      <div className="grid-fields">
        <Field label="vCPUs" htmlFor="resize-vcpus" error={shown.vcpus}>
          <input id="resize-vcpus" type="number" min={1} max={256} value={draft.vcpus} onChange={(e) => change({ vcpus: e.target.value })} />
        </Field>
        <Field label="Memory (MiB)" htmlFor="resize-memory" error={shown.memoryMib}>
          <input id="resize-memory" type="number" min={64} step={up ? MEMORY_STEP_MIB : 1} value={draft.memoryMib}
                 onChange={(e) => change({ memoryMib: e.target.value })} />
        </Field>
        <Field label="Disk (GiB)" htmlFor="resize-disk" error={shown.diskGib}>
          <input id="resize-disk" type="number" min={vm.disk_gib} value={draft.diskGib} onChange={(e) => change({ diskGib: e.target.value })} />
        </Field>
      </div>
      <p><button type="submit" className="primary" id="resize-apply" disabled={busy || Boolean(stateNote(vm))}>{busy ? "Resizing…" : "Resize"}</button></p>
      <ProblemLine error={problem} onDismiss={() => clearProblem()} />
      {done && <p className="success" role="status">{done}</p>}
    </form>
  );
}

function Disks({ vm }: { vm: VmRecord }) {
  const disks = vm.disks ?? [];
  const [name, setName] = useState("");
  const [size, setSize] = useState("10");
  const [tried, setTried] = useState(false);
  const [removing, setRemoving] = useState<string | null>(null);
  const { busy, problem, clearProblem, call } = useDeviceCall(vm);
  const nameError = tried || name
    ? dnsLabelProblem(name, "disk") || (disks.some((d) => d.name === name) ? `${vm.name} has a disk named ${name} already.` : "") : "";
  const sizeValue = /^\d+$/.test(size) ? Number(size) : null;
  const sizeError = tried && (sizeValue === null || sizeValue < 1 || sizeValue > 65536) ? "A whole number of GiB from 1 to 65536." : "";
  const full = disks.length >= MAX_EXTRA_DISKS;
  const add = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (dnsLabelProblem(name, "disk") || disks.some((d) => d.name === name) || sizeValue === null || sizeValue < 1 || sizeValue > 65536) return;
    if (await call("POST", "/disks", { name, size_gib: sizeValue })) {
      setName("");
      setTried(false);
    }
  };
  const target = disks.find((d) => d.id === removing);
  return (
    <>
      {disks.length > 0 && (
        <table className="list-table" id="disks">
          <thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Device</th><th scope="col">State</th><th scope="col"><span className="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            {disks.map((disk) => (
              <tr key={disk.id} data-disk={disk.name} data-state={disk.state ?? "attaching"}>
                <td>{disk.name}</td>
                <td>{disk.size_gib} GiB</td>
                <td><code>{disk.target}</code>{disk.bus ? ` (${disk.bus})` : ""}</td>
                <td><StateBadge state={disk.state ?? "attaching"} /></td>
                <td><button type="button" className="small danger" disabled={busy || disk.state !== "attached" || Boolean(stateNote(vm))}
                            aria-label={`Remove disk ${disk.name}`} onClick={() => setRemoving(disk.id)}>Remove</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="inline-form" onSubmit={(e) => void add(e)} noValidate aria-label="Add a disk">
        <Field label="Disk name" htmlFor="disk-name" error={nameError || undefined}>
          <input id="disk-name" value={name} autoComplete="off" spellCheck={false} maxLength={63}
                 aria-invalid={nameError ? true : undefined} onChange={(e) => setName(e.target.value.trim())} />
        </Field>
        <Field label="Size (GiB)" htmlFor="disk-size" error={sizeError || undefined}>
          <input id="disk-size" type="number" min={1} value={size} onChange={(e) => setSize(e.target.value)} />
        </Field>
        <button type="submit" id="disk-add" disabled={busy || full || Boolean(stateNote(vm))}>Add disk</button>
      </form>
      {full && <p className="field-hint">A VM has at most {MAX_EXTRA_DISKS} extra disks.</p>}
      <ProblemLine error={problem} onDismiss={() => clearProblem()} />
      <ConfirmDialog open={target !== undefined} danger title={target ? `Remove disk ${target.name}?` : ""} confirmLabel="Remove disk"
                     busy={busy} onClose={() => setRemoving(null)}
                     onConfirm={() => { const id = removing; setRemoving(null); if (id) void call("DELETE", `/disks/${seg(id)}`); }}>
        {target && <p>The disk {target.name} ({target.size_gib} GiB) is detached from <strong>{vm.name}</strong> and deleted with
          everything on it. This cannot be undone.</p>}
      </ConfirmDialog>
    </>
  );
}

function Media({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const isos = [...snapshot.images.values()].filter((i) => i.format === "iso" && i.state === "active");
  const [image, setImage] = useState("");
  const { busy, problem, clearProblem, call } = useDeviceCall(vm);
  const media = vm.media;
  const insert = async (e: FormEvent) => {
    e.preventDefault();
    if (!image) return;
    if (await call("POST", "/media", { image })) setImage("");
  };
  const blocked = Boolean(stateNote(vm));
  return (
    <>
      {media ? (
        <p id="media" data-state={media.state ?? "inserting"}>
          <code>{media.target ?? "sde"}</code>: {media.name || snapshot.images.get(media.image)?.name || media.image}{" "}
          <StateBadge state={media.state ?? "inserting"} />{" "}
          <button type="button" className="small" id="media-eject" disabled={busy || blocked || media.state !== "inserted"}
                  onClick={() => void call("DELETE", "/media")}>Eject</button>
        </p>
      ) : <p className="muted" id="media" data-state="empty">The media drive is empty.</p>}
      <form className="inline-form" onSubmit={(e) => void insert(e)} aria-label="Insert an ISO">
        <Field label="ISO image" htmlFor="media-image" hint={isos.length ? undefined : "No ISO in the library: upload one on the Images page."}>
          <select id="media-image" value={image} onChange={(e) => { setImage(e.target.value); clearProblem(); }}>
            <option value="">Choose an ISO…</option>
            {isos.map((i) => <option key={i.id} value={i.id}>{i.name}</option>)}
          </select>
        </Field>
        <button type="submit" id="media-insert" disabled={busy || blocked || !image}>{media ? "Change ISO" : "Insert"}</button>
      </form>
      <ProblemLine error={problem} onDismiss={() => clearProblem()} />
    </>
  );
}
