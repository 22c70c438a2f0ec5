// The VM list: every VM, live, with its state, node, image and how to reach it.
import { useState } from "react";
import type { VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { CopyButton, Empty, ProblemLine, ProgressBar, StateBadge } from "../../components/bits";
import { mib } from "../../lib/format";
import { Link } from "../../lib/router";
import { canDo, imageName, runAction, type VmAction } from "../../lib/vmActions";
import { live, useLive } from "../../state/live";

export function VmListPage() {
  const snapshot = useLive();
  const [error, setError] = useState<unknown>(null);
  const [deleting, setDeleting] = useState<VmRecord | null>(null);
  const vms = [...snapshot.vms.values()].sort((a, b) => a.created_at.localeCompare(b.created_at));

  const act = async (vm: VmRecord, action: VmAction) => {
    setError(null);
    try {
      live.putVm(await runAction(vm, action));
    } catch (err) {
      setError(err);
    }
  };

  return (
    <section className="page" aria-labelledby="vms-title">
      <div className="page-head">
        <h1 id="vms-title">Virtual machines</h1>
        <Link href="/vms/new" className="button primary">Create VM</Link>
      </div>
      <ProblemLine error={error} onDismiss={() => setError(null)} />
      {snapshot.loaded && vms.length === 0 && (
        <Empty>No VMs yet. <Link href="/vms/new">Create one with the wizard</Link>; it needs an image —{" "}
          <Link href="/images">upload one or download one from the catalog</Link>.</Empty>
      )}
      <ul className="cards vm-list" id="vms">
        {vms.map((vm) => (
          <li key={vm.id} className="card vm-row" data-vm-id={vm.id} data-vm-name={vm.name} data-state={vm.state}>
            <div className="vm-row-main">
              <Link href={`/vms/${encodeURIComponent(vm.name)}`} className="vm-name">{vm.name}</Link>
              <StateBadge state={vm.state} />
            </div>
            <dl className="facts">
              <div><dt>Node</dt><dd>{vm.node || "—"}</dd></div>
              <div><dt>Image</dt><dd>{imageName(vm, snapshot.images)}</dd></div>
              <div className="span"><dt>Size</dt><dd>{vm.vcpus} vCPU · {mib(vm.memory_mib)} · {vm.disk_gib} GiB</dd></div>
              {vm.ssh_command && (
                <div className="ssh"><dt>SSH</dt><dd><code>{vm.ssh_command}</code>{" "}
                  <CopyButton text={vm.ssh_command} label={`Copy SSH command of ${vm.name}`} /></dd></div>
              )}
            </dl>
            {vm.state === "pending" && typeof vm.image_progress === "number" && (
              <ProgressBar done={vm.image_progress} total={1} label={`Image download for ${vm.name}`} />
            )}
            {vm.error && vm.state === "error" && <p className="vm-error">{vm.error.code}: {vm.error.message}</p>}
            <div className="row-actions">
              <button type="button" className="small" disabled={!canDo("start", vm.state)}
                      aria-label={`Start ${vm.name}`} onClick={() => void act(vm, "start")}>Start</button>
              <button type="button" className="small" disabled={!canDo("stop", vm.state)}
                      aria-label={`Shut down ${vm.name}`} onClick={() => void act(vm, "stop")}>Shut down</button>
              <Link href={`/vms/${encodeURIComponent(vm.name)}/console`} className="button small"
                    aria-label={`Console of ${vm.name}`}>Console</Link>
              <button type="button" className="small danger" disabled={!canDo("delete", vm.state)}
                      aria-label={`Delete ${vm.name}`} onClick={() => setDeleting(vm)}>Delete</button>
            </div>
          </li>
        ))}
      </ul>
      <ConfirmDialog open={deleting !== null} title={`Delete ${deleting?.name ?? ""}?`} confirmLabel="Delete VM" danger
                     onClose={() => setDeleting(null)}
                     onConfirm={() => { if (deleting) void act(deleting, "delete"); setDeleting(null); }}>
        <p>The VM, its disk and its files are removed. This cannot be undone.</p>
      </ConfirmDialog>
    </section>
  );
}
