// Clone a VM (a new VM from its disk, now or at a snapshot) and publish it as a template (a new
// image in the library), each followed live: the clone's state, the image's upload progress and
// the node's publish phases (docs/day2.md).
import { type FormEvent, useState } from "react";
import { seg, sendJson } from "../../api/client";
import { type ImageRecord, normImage, type VmRecord } from "../../api/types";
import { Field, ProblemLine, ProgressBar, StateBadge } from "../../components/bits";
import { dnsLabelProblem, snapshotBlocked, type VmSnapshot } from "../../lib/day2";
import { Link } from "../../lib/router";
import { live, useLive } from "../../state/live";
import { Activity } from "./Activity";

function SnapshotSelect({ id, snapshots, value, onChange }: {
  id: string; snapshots: readonly VmSnapshot[]; value: string; onChange: (value: string) => void;
}) {
  const ready = snapshots.filter((s) => s.state === "ready");
  return (
    <Field label="From" htmlFor={id} hint={ready.length ? undefined : "No ready snapshot: the current disk is used."}>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">The current disk (a running VM is read through a temporary snapshot)</option>
        {ready.map((s) => <option key={s.id} value={s.id}>snapshot {s.name}</option>)}
      </select>
    </Field>
  );
}

export function ClonePublishTab({ vm }: { vm: VmRecord }) {
  const [cloneIds, setCloneIds] = useState<string[]>([]);
  return (
    <div className="overview-grid clone-tab">
      <section className="card" aria-labelledby="clone-title">
        <h2 id="clone-title">Clone</h2>
        <CloneForm vm={vm} onCloned={(id) => setCloneIds((ids) => [...ids, id])} />
        <Clones ids={cloneIds} />
      </section>
      <section className="card" aria-labelledby="publish-title">
        <h2 id="publish-title">Publish as a template</h2>
        <PublishForm vm={vm} />
        <h3>Activity</h3>
        <Activity vm={vm} section="clone" alsoVms={cloneIds} />
      </section>
    </div>
  );
}

function CloneForm({ vm, onCloned }: { vm: VmRecord; onCloned: (id: string) => void }) {
  const snapshot = useLive();
  const [name, setName] = useState("");
  const [from, setFrom] = useState("");
  const [linked, setLinked] = useState(true);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<unknown>(null);
  const taken = [...snapshot.vms.values()].some((v) => v.name === name);
  const nameError = tried || name ? (dnsLabelProblem(name, "clone") || (taken ? `A VM named '${name}' exists already.` : "")) : "";
  const windows = vm.os_type === "windows";
  const blocked = windows ? "Windows VMs cannot be cloned: they need sysprep (publish a sysprepped image instead)." : snapshotBlocked(vm);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (dnsLabelProblem(name, "clone") || taken || blocked) return;
    setBusy(true);
    setProblem(null);
    try {
      const clone = await sendJson<VmRecord>("POST", `/v1/vms/${seg(vm.id)}/clone`,
        { name, linked, ...(from ? { snapshot: from } : {}) });
      live.putVm(clone);
      onCloned(clone.id);
      setName("");
      setTried(false);
    } catch (err) {
      setProblem(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={(e) => void submit(e)} noValidate>
      {blocked && <p className="warning" role="status">{blocked}</p>}
      <p className="muted">A new VM on {vm.node || "the same node"}: new id, MAC, host name and SSH host keys (cloud-init runs
        as a new instance), the same size, image and settings.</p>
      <Field label="Name of the clone" htmlFor="clone-name" error={nameError || undefined}>
        <input id="clone-name" value={name} autoComplete="off" spellCheck={false} maxLength={63}
               aria-invalid={nameError ? true : undefined} onChange={(e) => setName(e.target.value.trim())} />
      </Field>
      <SnapshotSelect id="clone-from" snapshots={vm.snapshots ?? []} value={from} onChange={setFrom} />
      <label className="check">
        <input type="checkbox" id="clone-linked" checked={linked} onChange={(e) => setLinked(e.target.checked)} />
        Linked: copy only what {vm.name} changed over its image (fast, small); off: a full, independent copy
      </label>
      <p><button type="submit" className="primary" id="clone-create" disabled={busy || Boolean(blocked)}>{busy ? "Cloning…" : "Clone"}</button></p>
      <ProblemLine error={problem} onDismiss={() => setProblem(null)} />
    </form>
  );
}

function Clones({ ids }: { ids: readonly string[] }) {
  const snapshot = useLive();
  if (ids.length === 0) return null;
  return (
    <ul className="plain-list" id="clones" aria-label="Clones made here">
      {ids.map((id) => {
        const clone = snapshot.vms.get(id);
        if (!clone) return <li key={id}>{id}: deleted</li>;
        return (
          <li key={id} data-vm-id={id} data-state={clone.state}>
            <Link href={`/vms/${encodeURIComponent(clone.name)}`}>{clone.name}</Link> <StateBadge state={clone.state} />
            {clone.error && <span className="problem-text"> {clone.error.code}: {clone.error.message}{clone.error.hint ? ` — ${clone.error.hint}` : ""}</span>}
          </li>
        );
      })}
    </ul>
  );
}

function PublishForm({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const [name, setName] = useState("");
  const [from, setFrom] = useState("");
  const [os, setOs] = useState("");
  const [version, setVersion] = useState("");
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<unknown>(null);
  const [imageId, setImageId] = useState("");
  const nameError = tried && !name.trim() ? "Name the new image." : name.length > 200 ? "At most 200 characters." : "";
  const blocked = snapshotBlocked(vm);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (!name.trim() || name.length > 200 || blocked) return;
    setBusy(true);
    setProblem(null);
    try {
      const image = await sendJson<ImageRecord>("POST", `/v1/vms/${seg(vm.id)}/publish`, {
        name: name.trim(), ...(from ? { snapshot: from } : {}), ...(os.trim() ? { os: os.trim() } : {}),
        ...(version.trim() ? { version: version.trim() } : {}),
      });
      live.putImage(normImage(image));
      setImageId(image.id);
      setTried(false);
    } catch (err) {
      setProblem(err);
    } finally {
      setBusy(false);
    }
  };
  const image = imageId ? snapshot.images.get(imageId) : undefined;
  return (
    <form onSubmit={(e) => void submit(e)} noValidate>
      {blocked && <p className="warning" role="status">{blocked}</p>}
      <p className="muted">A flattened, compressed copy of the disk becomes an image in the library; VMs made from it run
        cloud-init as new instances.</p>
      <Field label="Image name" htmlFor="publish-name" error={nameError || undefined}>
        <input id="publish-name" value={name} autoComplete="off" spellCheck={false} maxLength={200}
               aria-invalid={nameError ? true : undefined} onChange={(e) => setName(e.target.value)} />
      </Field>
      <SnapshotSelect id="publish-from" snapshots={vm.snapshots ?? []} value={from} onChange={setFrom} />
      <div className="grid-fields">
        <Field label="OS (optional)" htmlFor="publish-os" hint="Default: the source image's.">
          <input id="publish-os" value={os} onChange={(e) => setOs(e.target.value)} />
        </Field>
        <Field label="Version (optional)" htmlFor="publish-version">
          <input id="publish-version" value={version} onChange={(e) => setVersion(e.target.value)} />
        </Field>
      </div>
      <p><button type="submit" className="primary" id="publish-create" disabled={busy || Boolean(blocked)}>{busy ? "Publishing…" : "Publish"}</button></p>
      <ProblemLine error={problem} onDismiss={() => setProblem(null)} />
      {image && (
        <div className="published" id="published" data-state={image.state} role="status">
          <p>Image <Link href="/images">{image.name}</Link> <StateBadge state={image.state} label={image.state} /></p>
          {(image.state === "uploading" || image.state === "verifying" || image.state === "queued") && (
            <ProgressBar done={image.bytes_done ?? 0} total={image.bytes_total} label={`Publishing ${image.name}`} />
          )}
          {image.state === "active" && <p><Link href={`/vms/new?image=${encodeURIComponent(image.id)}`}>Create a VM from {image.name}</Link></p>}
          {image.error && <p className="problem">{String(image.error)}</p>}
        </div>
      )}
    </form>
  );
}
