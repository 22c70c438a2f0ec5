// A VM's snapshots (docs/day2.md): take one (with memory on a running VM), list them with their
// state as it changes, revert to one, delete one. The record's `snapshots` list is the truth;
// every vm.snapshot event re-reads it.
import { type FormEvent, useState } from "react";
import { seg, sendJson } from "../../api/client";
import type { VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { Field, ProblemLine, StateBadge } from "../../components/bits";
import {
  clonesBySnapshot, linkedClonesOf, memorySnapshotBlocked, snapshotBlocked, snapshotDeleteBlocked, snapshotNameProblem,
  snapshotSummary, type VmSnapshot,
} from "../../lib/day2";
import { time } from "../../lib/format";
import { Link } from "../../lib/router";
import { live, useLive } from "../../state/live";
import { Activity } from "./Activity";
import { useAction } from "./useAction";

export function SnapshotsTab({ vm }: { vm: VmRecord }) {
  const snapshots = vm.snapshots ?? [];
  const { busy, problem, clearProblem, run } = useAction();
  // A snapshot that linked clones are kept on cannot be deleted (the gateway: 409 snapshot_in_use).
  const all = useLive();
  const clonesOn = clonesBySnapshot(linkedClonesOf(vm, all.vms.values()));
  const [confirm, setConfirm] = useState<{ action: "revert" | "delete"; snap: VmSnapshot } | null>(null);
  const act = async (action: "revert" | "delete", snap: VmSnapshot) => {
    setConfirm(null);
    await run(async () => {
      const path = `/v1/vms/${seg(vm.id)}/snapshots/${seg(snap.id)}`;
      await sendJson<VmSnapshot>(action === "revert" ? "POST" : "DELETE", action === "revert" ? `${path}/revert` : path);
      live.refreshVm(vm.id);
    });
  };
  const blocked = vm.template ? `${vm.name} is a template: it is frozen, without snapshots.` : snapshotBlocked(vm);
  return (
    <div className="overview-grid snapshots-tab">
      <section className="card" aria-labelledby="snap-new-title">
        <h2 id="snap-new-title">Take a snapshot</h2>
        <NewSnapshot vm={vm} snapshots={snapshots} />
      </section>
      <section className="card" aria-labelledby="snap-list-title">
        <h2 id="snap-list-title">Snapshots ({snapshots.length})</h2>
        {snapshots.length === 0 ? <p className="muted">None yet.</p> : (
          <ul className="plain-list snapshot-list" id="snapshots">
            {[...snapshots].reverse().map((snap) => {
              const clones = clonesOn.get(snap.id) ?? [];
              const inUse = snapshotDeleteBlocked(clones);
              const hintId = `snapshot-${snap.id}-in-use`;
              return (
                <li key={snap.id} className="snapshot" data-snapshot={snap.name} data-state={snap.state ?? "creating"}
                    data-clones={clones.length || undefined}>
                  <div className="snapshot-head">
                    <strong>{snap.name}</strong> <StateBadge state={snap.state ?? "creating"} />
                  </div>
                  <p className="muted">{time(snap.created_at)} · {snapshotSummary(snap)}</p>
                  {snap.description && <p className="wrap">{snap.description}</p>}
                  {snap.error && <p className="problem" role="alert">{snap.error}</p>}
                  {clones.length > 0 && (
                    <p className="field-hint snapshot-clones" id={hintId}>Base of linked clones:{" "}
                      {clones.map((c, i) => <span key={c.id}>{i ? ", " : ""}<Link href={`/vms/${encodeURIComponent(c.name)}`}>{c.name}</Link></span>)}
                      {" "}(it is kept while they exist)</p>
                  )}
                  <div className="button-row">
                    <button type="button" className="small" disabled={busy || snap.state !== "ready" || Boolean(blocked)}
                            aria-label={`Revert to ${snap.name}`} onClick={() => setConfirm({ action: "revert", snap })}>Revert</button>
                    <button type="button" className="small danger"
                            disabled={busy || snap.state === "deleting" || snap.state === "reverting" || Boolean(inUse)}
                            title={inUse || undefined} aria-describedby={inUse ? hintId : undefined}
                            aria-label={`Delete snapshot ${snap.name}`} onClick={() => setConfirm({ action: "delete", snap })}>Delete</button>
                  </div>
                </li>
              );
            })}
          </ul>
        )}
        <ProblemLine error={problem} onDismiss={clearProblem} />
        <h3>Activity</h3>
        <Activity vm={vm} section="snapshots" />
      </section>
      <ConfirmDialog open={confirm !== null} danger={confirm?.action === "delete"} busy={busy}
                     title={confirm ? `${confirm.action === "revert" ? "Revert" : "Delete"} ${confirm.snap.name}?` : ""}
                     confirmLabel={confirm?.action === "revert" ? "Revert VM" : "Delete snapshot"}
                     onClose={() => setConfirm(null)} onConfirm={() => confirm && void act(confirm.action, confirm.snap)}>
        {confirm?.action === "revert" ? (
          <p><strong>{vm.name}</strong> goes back to {confirm.snap.name}: what changed on its disk since
            {confirm.snap.memory ? " (and its running programs) is" : " is"} lost.
            {!confirm.snap.memory && vm.state !== "stopped" && " The VM is stopped, its disk restored and it boots again."}</p>
        ) : confirm ? <p>The snapshot {confirm.snap.name} of <strong>{vm.name}</strong> is deleted; the VM is not changed.</p> : null}
      </ConfirmDialog>
    </div>
  );
}

function NewSnapshot({ vm, snapshots }: { vm: VmRecord; snapshots: readonly VmSnapshot[] }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [memory, setMemory] = useState(false);
  const [tried, setTried] = useState(false);
  const { busy, problem, clearProblem, run } = useAction();
  const nameError = tried || name ? snapshotNameProblem(name, snapshots) : "";
  const blocked = vm.template ? `${vm.name} is a template: it is frozen, without snapshots.` : snapshotBlocked(vm);
  const memoryBlocked = memorySnapshotBlocked(vm);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTried(true);
    if (snapshotNameProblem(name, snapshots) || blocked) return;
    const done = await run(async () => {
      await sendJson<VmSnapshot>("POST", `/v1/vms/${seg(vm.id)}/snapshots`,
        { name, ...(description.trim() ? { description: description.trim() } : {}), memory: memory && !memoryBlocked });
      live.refreshVm(vm.id);
    });
    if (done) {
      setName("");
      setDescription("");
      setTried(false);
    }
  };
  return (
    <form onSubmit={(e) => void submit(e)} noValidate>
      {blocked && <p className="warning" role="status">{blocked}</p>}
      <Field label="Name" htmlFor="snap-name" error={nameError || undefined} hint="Letters, digits, '_', '.' or '-'; unique for this VM.">
        <input id="snap-name" value={name} autoComplete="off" spellCheck={false} maxLength={63}
               aria-invalid={nameError ? true : undefined} onChange={(e) => setName(e.target.value.trim())} />
      </Field>
      <Field label="Description (optional)" htmlFor="snap-description">
        <input id="snap-description" value={description} onChange={(e) => setDescription(e.target.value)} />
      </Field>
      <label className="check">
        <input type="checkbox" id="snap-memory" checked={memory && !memoryBlocked} disabled={Boolean(memoryBlocked)}
               onChange={(e) => setMemory(e.target.checked)} />
        Include memory: a revert resumes the guest exactly where it was (it pauses while its RAM is saved)
      </label>
      {memoryBlocked ? <p className="field-hint">{memoryBlocked}</p>
        : <p className="field-hint">Without memory, a running VM's file systems are frozen around the snapshot when its guest agent answers.</p>}
      <p><button type="submit" className="primary" id="snap-create" disabled={busy || Boolean(blocked)}>{busy ? "Taking…" : "Take snapshot"}</button></p>
      <ProblemLine error={problem} onDismiss={clearProblem} />
    </form>
  );
}
