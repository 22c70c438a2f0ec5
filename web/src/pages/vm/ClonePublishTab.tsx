// Make a VM a template, clone it (linked: an instant overlay over a frozen base, the template's
// disk or a snapshot's base on the node; or a full copy; now or at a snapshot) and publish it
// as an image in the library
// (generalized through the guest agent when it can be), each followed live: the clone's state,
// the image's upload progress and the node's publish phases (docs/day2.md).
import { type FormEvent, useState } from "react";
import { seg, sendJson } from "../../api/client";
import { type ImageRecord, normImage, type VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { Field, ProblemLine, ProgressBar, StateBadge } from "../../components/bits";
import {
  canGeneralize, dnsLabelProblem, linkedCloneBase, linkedClonesOf, snapshotBlocked, templateBlocked,
  type VmSnapshot,
} from "../../lib/day2";
import { Link } from "../../lib/router";
import { live, useLive } from "../../state/live";
import { Activity } from "./Activity";
import { LinkedCloneList } from "./LinkedCloneList";
import { useAction } from "./useAction";

function SnapshotSelect({ id, snapshots, value, onChange, disabled = "" }: {
  id: string; snapshots: readonly VmSnapshot[]; value: string; onChange: (value: string) => void; disabled?: string;
}) {
  const ready = snapshots.filter((s) => s.state === "ready");
  const hint = disabled || (ready.length ? undefined : "No ready snapshot: the current disk is used.");
  return (
    <Field label="From" htmlFor={id} hint={hint}>
      <select id={id} value={disabled ? "" : value} disabled={Boolean(disabled)} onChange={(e) => onChange(e.target.value)}>
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
        {!vm.template && <DependentClones vm={vm} />}
        <h2 id="template-title">Template</h2>
        <TemplateSection vm={vm} />
      </section>
      <section className="card" aria-labelledby="publish-title">
        <h2 id="publish-title">Publish as an image</h2>
        <PublishForm vm={vm} />
        <h3>Activity</h3>
        <Activity vm={vm} section="clone" alsoVms={cloneIds} />
      </section>
    </div>
  );
}

/** The linked clones of a VM that is not a template, each on a snapshot of it: what keeps the
 * VM and those snapshots from being deleted (Proxmox shows a base's dependants the same way). */
function DependentClones({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const clones = linkedClonesOf(vm, snapshot.vms.values());
  if (clones.length === 0) return null;
  return (
    <div id="linked-clones" data-count={clones.length}>
      <h3>Linked clones ({clones.length}), each kept on a snapshot of this VM</h3>
      <LinkedCloneList source={vm} clones={clones} />
      <p className="field-hint">{vm.name} and those snapshots cannot be deleted while these clones exist: delete the
        clones first.</p>
    </div>
  );
}

function TemplateSection({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const action = useAction();
  const [confirm, setConfirm] = useState(false);
  const clones = linkedClonesOf(vm, snapshot.vms.values());
  const make = async () => {
    setConfirm(false);
    await action.run(async () => {
      live.putVm(await sendJson<VmRecord>("POST", `/v1/vms/${seg(vm.id)}/template`));
    });
  };
  if (vm.template) {
    return (
      <div id="template" data-template="true">
        <p><span className="badge template">template</span> {vm.name} is frozen: it is never started, resized or
          snapshotted, and its disk is the base of its linked clones (made in an instant).</p>
        {clones.length > 0 ? (
          <p id="linked-clones">Linked clones ({clones.length}), deleted before the template can be:{" "}
            {clones.map((c, i) => <span key={c.id}>{i ? ", " : ""}<Link href={`/vms/${encodeURIComponent(c.name)}`}>{c.name}</Link></span>)}</p>
        ) : <p className="muted">No linked clone depends on it.</p>}
      </div>
    );
  }
  const blocked = templateBlocked(vm);
  return (
    <div id="template" data-template="false">
      <p className="muted">A template is a stopped VM frozen for good (no start, resize or snapshot) whose disk is
        the base of linked clones: each is an overlay over it, made in milliseconds.</p>
      {blocked && <p className="field-hint" id="template-blocked">{blocked}</p>}
      <p><button type="button" id="template-make" disabled={action.busy || Boolean(blocked)} onClick={() => setConfirm(true)}>
        Make template</button></p>
      <ProblemLine error={action.problem} onDismiss={action.clearProblem} />
      <ConfirmDialog open={confirm} busy={action.busy} title={`Make ${vm.name} a template?`} confirmLabel="Make template"
                     onClose={() => setConfirm(false)} onConfirm={() => void make()}>
        <p><strong>{vm.name}</strong> can then not be started, resized or snapshotted again; clone it to use it.</p>
      </ConfirmDialog>
    </div>
  );
}

function CloneForm({ vm, onCloned }: { vm: VmRecord; onCloned: (id: string) => void }) {
  const snapshot = useLive();
  const action = useAction();
  const [name, setName] = useState("");
  const [from, setFrom] = useState("");
  // Linked by default for a template, full otherwise (the gateway's defaults), until chosen.
  const [linkedChoice, setLinked] = useState<boolean | null>(null);
  const linked = linkedChoice ?? Boolean(vm.template);
  const fromName = (vm.snapshots ?? []).find((s) => s.id === from)?.name ?? "";
  const [tried, setTried] = useState(false);
  const taken = [...snapshot.vms.values()].some((v) => v.name === name);
  const nameError = tried || name ? (dnsLabelProblem(name, "clone") || (taken ? `A VM named '${name}' exists already.` : "")) : "";
  const windows = vm.os_type === "windows";
  const blocked = windows ? "Windows VMs cannot be cloned: they need sysprep (publish a sysprepped image instead)." : snapshotBlocked(vm);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (dnsLabelProblem(name, "clone") || taken || blocked) return;
    const done = await action.run(async () => {
      const clone = await sendJson<VmRecord>("POST", `/v1/vms/${seg(vm.id)}/clone`,
        { name, linked, ...(from ? { snapshot: from } : {}) });
      live.putVm(clone);
      onCloned(clone.id);
    });
    if (done) {
      setName("");
      setTried(false);
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
      <label className="check">
        <input type="checkbox" id="clone-linked" checked={linked} onChange={(e) => setLinked(e.target.checked)} />
        Linked: an overlay over a frozen base, made at once and small; off: a full, independent copy
      </label>
      {linked && <p className="field-hint" id="clone-linked-hint">{linkedCloneBase(vm, fromName, name)}</p>}
      <SnapshotSelect id="clone-from" snapshots={vm.snapshots ?? []} value={from} onChange={setFrom} />
      <p><button type="submit" className="primary" id="clone-create" disabled={action.busy || Boolean(blocked)}>{action.busy ? "Cloning…" : "Clone"}</button></p>
      <ProblemLine error={action.problem} onDismiss={action.clearProblem} />
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
            {clone.clone_of?.linked ? " linked" : " full copy"}
            {clone.error && <span className="problem-text"> {clone.error.code}: {clone.error.message}{clone.error.hint ? ` — ${clone.error.hint}` : ""}</span>}
          </li>
        );
      })}
    </ul>
  );
}

function PublishForm({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const action = useAction();
  const [name, setName] = useState("");
  const [from, setFrom] = useState("");
  const [os, setOs] = useState("");
  const [version, setVersion] = useState("");
  const possible = canGeneralize(vm);
  const [generalizeWanted, setGeneralize] = useState(true);
  const generalize = possible && generalizeWanted && !from;
  const [tried, setTried] = useState(false);
  const [imageId, setImageId] = useState("");
  const nameError = tried && !name.trim() ? "Name the new image." : name.length > 200 ? "At most 200 characters." : "";
  const blocked = snapshotBlocked(vm);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (!name.trim() || name.length > 200 || blocked) return;
    const done = await action.run(async () => {
      const image = await sendJson<ImageRecord>("POST", `/v1/vms/${seg(vm.id)}/publish`, {
        name: name.trim(), generalize, ...(from ? { snapshot: from } : {}), ...(os.trim() ? { os: os.trim() } : {}),
        ...(version.trim() ? { version: version.trim() } : {}),
      });
      live.putImage(normImage(image));
      setImageId(image.id);
    });
    if (done) setTried(false);
  };
  const image = imageId ? snapshot.images.get(imageId) : undefined;
  const generalized = image?.labels?.generalized;
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
      <label className="check">
        <input type="checkbox" id="publish-generalize" checked={generalize} disabled={!possible || Boolean(from)}
               onChange={(e) => setGeneralize(e.target.checked)} />
        Generalize first: cloud-init clean, a new machine-id and SSH host keys at the next boot (through the guest
        agent); then {vm.name} is shut down
      </label>
      {!generalize && (
        <p className="field-hint" id="publish-not-generalized">
          {possible && !from ? "Not generalized: " : `Not generalized (${from ? "a snapshot is published as it is" : "that needs the VM running with its guest agent"}): `}
          the image keeps this guest's machine-id and logs; its VMs still get a new instance-id, host name and SSH keys.
        </p>
      )}
      <div className="grid-fields">
        <Field label="OS (optional)" htmlFor="publish-os" hint="Default: the source image's.">
          <input id="publish-os" value={os} onChange={(e) => setOs(e.target.value)} />
        </Field>
        <Field label="Version (optional)" htmlFor="publish-version">
          <input id="publish-version" value={version} onChange={(e) => setVersion(e.target.value)} />
        </Field>
      </div>
      <p><button type="submit" className="primary" id="publish-create" disabled={action.busy || Boolean(blocked)}>{action.busy ? "Publishing…" : "Publish"}</button></p>
      <ProblemLine error={action.problem} onDismiss={action.clearProblem} />
      {image && (
        <div className="published" id="published" data-state={image.state} data-generalized={generalized ?? ""} role="status">
          <p>Image <Link href="/images">{image.name}</Link> <StateBadge state={image.state} label={image.state} />
            {generalized && <span className="muted"> {generalized === "true" ? "generalized" : "not generalized"}</span>}</p>
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
