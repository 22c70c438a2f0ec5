// After Create: the VM's way to running (and ready, with cloud-init), followed live.
import type { VmRecord } from "../../api/types";
import { GuestPhases, useNow } from "../../components/GuestPhases";
import { ProgressBar, StateBadge } from "../../components/bits";
import { duration, PHASES, since } from "../../lib/guest";
import { Link } from "../../lib/router";

const ORDER = ["pending", "creating", "starting", "running", "ready"];

interface Phase {
  key: string;
  title: string;
  text: string;
}

export function phasesFor(withCloudInit: boolean): Phase[] {
  const phases: Phase[] = [
    { key: "pending", title: "Accepted", text: "Placed on a node and queued." },
    { key: "creating", title: "Creating", text: "Image fetched to the node, disk and seed made, domain defined." },
    { key: "starting", title: "Starting", text: "The domain is started." },
    { key: "running", title: "Running", text: "The VM runs." },
  ];
  if (withCloudInit) phases.push({ key: "ready", title: "Ready", text: "cloud-init finished in the guest." });
  return phases;
}

export function ProgressView({ vm, withCloudInit, onAnother }: { vm: VmRecord; withCloudInit: boolean; onAnother: () => void }) {
  const phases = phasesFor(withCloudInit);
  const at = ORDER.indexOf(vm.state);
  const failed = vm.state === "error";
  const done = withCloudInit ? vm.state === "ready" : at >= ORDER.indexOf("running");
  const waitingForGuest = withCloudInit && vm.state === "running";
  // The clock runs until the guest is ready (or the VM fails); then it says how long it took.
  const ready = vm.state === "ready" || vm.guest?.phase === "ready";
  const now = useNow(!ready && !failed);
  const readyAt = vm.guest?.ready_at ?? vm.guest?.phases?.ready ?? null;
  const elapsed = ready && readyAt ? since(vm.created_at, Date.parse(readyAt)) : since(vm.created_at, now);
  const phase = PHASES.find((p) => p.key === vm.guest?.phase);
  return (
    <section className="progress-view" aria-labelledby="progress-title">
      <h2 id="progress-title">
        {vm.name} <StateBadge state={vm.state} />
      </h2>
      <ol className="phases" id="create-progress" data-state={vm.state}>
        {phases.map((phase) => {
          const index = ORDER.indexOf(phase.key);
          // running and ready are states a VM rests in: reached means done. With cloud-init,
          // "ready" is what the VM works on while it runs.
          const resting = vm.state === "running" || vm.state === "ready";
          const status = index < at || (index === at && resting) ? "done"
            : index === at || (index === at + 1 && resting && withCloudInit && !failed) ? "current" : "todo";
          return (
            <li key={phase.key} className={`phase ${status}`} data-phase={phase.key} aria-current={status === "current" ? "step" : undefined}>
              <span className="phase-mark" aria-hidden="true">{status === "done" ? "✓" : status === "current" ? "●" : "○"}</span>
              <span className="phase-title">{phase.title}</span>
              <span className="phase-text">{phase.text}</span>
              {phase.key === "creating" && vm.state === "pending" && typeof vm.image_progress === "number" && (
                <ProgressBar done={vm.image_progress} total={1} label="Image download" />
              )}
            </li>
          );
        })}
      </ol>
      <p className="elapsed" id="create-elapsed" data-phase={vm.guest?.phase ?? ""}>
        {phase ? <>Guest phase: <strong>{phase.title}</strong> · </> : null}
        {elapsed !== null && (ready ? `ready ${duration(elapsed)} after Create` : `${duration(elapsed)} since Create`)}
      </p>
      {(vm.guest?.phase || at >= ORDER.indexOf("starting")) && (
        <details className="guest-phases-box" open={at >= ORDER.indexOf("running")}>
          <summary>Readiness phases</summary>
          <GuestPhases vm={vm} withCloudInit={withCloudInit} id="create-phases" />
        </details>
      )}
      {failed && vm.error && (
        <p className="problem" role="alert"><strong>{vm.error.code}</strong>: {vm.error.message}{vm.error.hint && ` — ${vm.error.hint}`}</p>
      )}
      {waitingForGuest && <p className="muted" role="status">{vm.name} runs; cloud-init is configuring the guest (a minute or two on a first boot).</p>}
      {done && <p className="success" role="status">{vm.name} is {vm.state}.{vm.ssh_command && <> Connect with <code>{vm.ssh_command}</code>.</>}</p>}
      <p><Link href={`/vms/${encodeURIComponent(vm.name)}`} className="button primary">Open {vm.name}</Link>{" "}
        <button type="button" onClick={onAnother}>Create another</button></p>
    </section>
  );
}
