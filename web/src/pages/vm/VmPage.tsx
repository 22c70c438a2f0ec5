// One VM: overview and actions, console, serial log, events timeline, cloud-init re-run.
import { useEffect, useState } from "react";
import { getJson, seg } from "../../api/client";
import type { VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { CopyButton, ProblemLine, StateBadge } from "../../components/bits";
import { linkedClonesOf, vmDeleteBlocked } from "../../lib/day2";
import { mib, time } from "../../lib/format";
import { labelsText } from "../../lib/vmList";
import { Link, navigate } from "../../lib/router";
import { ACTION_LABELS, canDo, imageName, runAction, type VmAction } from "../../lib/vmActions";
import { findVm, live, useLive } from "../../state/live";
import { ClonePublishTab } from "./ClonePublishTab";
import { CloudInitTab } from "./CloudInitTab";
import { ConsoleTab } from "./ConsoleTab";
import { EventsTab } from "./EventsTab";
import { GuestCard } from "./GuestCard";
import { GuestTab } from "./GuestTab";
import { HardwareTab } from "./HardwareTab";
import { LinkedCloneList } from "./LinkedCloneList";
import { SnapshotsTab } from "./SnapshotsTab";
import { SerialLogTab } from "./SerialLogTab";

const TABS = [
  { key: "overview", label: "Overview" },
  { key: "console", label: "Console" },
  { key: "guest", label: "Guest agent" },
  { key: "snapshots", label: "Snapshots" },
  { key: "clone", label: "Clone & publish" },
  { key: "hardware", label: "Hardware" },
  { key: "log", label: "Serial log" },
  { key: "events", label: "Events" },
  { key: "cloud-init", label: "Cloud-init" },
];
const ACTIONS: VmAction[] = ["start", "stop", "force-stop", "reboot", "pause", "resume", "retry"];
// ACPI shutdown that takes longer than this is worth a word (a guest may ignore it).
const SLOW_STOP_MS = 8000;

export function VmPage({ vmRef, tab }: { vmRef: string; tab: string }) {
  const snapshot = useLive();
  const vm = findVm(snapshot, vmRef);
  const [missing, setMissing] = useState(false);
  const [deletedName, setDeletedName] = useState("");

  useEffect(() => {
    if (vm || !snapshot.loaded) return;
    // Not in the list (yet): ask for it by id or name once.
    getJson<VmRecord>(`/v1/vms/${seg(vmRef)}`).then((record) => live.putVm(record)).catch(() => setMissing(true));
  }, [vm, vmRef, snapshot.loaded]);

  if (!vm) {
    return (
      <section className="page">
        <h1>{vmRef}</h1>
        {deletedName ? <p role="status">{deletedName} was deleted. <Link href="/">Back to the VMs</Link></p>
          : missing ? <p>No VM named {vmRef}. <Link href="/">Back to the VMs</Link></p> : <p>Loading…</p>}
      </section>
    );
  }
  const base = `/vms/${encodeURIComponent(vm.name)}`;
  return (
    <section className="page vm-page" aria-labelledby="vm-title" data-vm-id={vm.id} data-state={vm.state}>
      <div className="page-head">
        <h1 id="vm-title">{vm.name} <StateBadge state={vm.state} /></h1>
        <Actions vm={vm} onDeleted={() => setDeletedName(vm.name)} />
      </div>
      {vm.state === "unknown" && (
        <p className="warning" role="status">Node {vm.node} is offline: {vm.name}'s real state is not known until the node
          is back. Deleting it now removes the record at once (the node removes its files if it returns).</p>
      )}
      <nav className="tabs" aria-label={`${vm.name} sections`}>
        {TABS.map((t) => (
          <Link key={t.key} href={t.key === "overview" ? base : `${base}/${t.key}`}
                aria-current={tab === t.key ? "page" : undefined}>{t.label}</Link>
        ))}
      </nav>
      {tab === "overview" && <Overview vm={vm} />}
      {tab === "console" && <ConsoleTab vm={vm} />}
      {tab === "guest" && <GuestTab vm={vm} />}
      {tab === "snapshots" && <SnapshotsTab vm={vm} />}
      {tab === "clone" && <ClonePublishTab vm={vm} />}
      {tab === "hardware" && <HardwareTab vm={vm} />}
      {tab === "log" && <SerialLogTab vm={vm} />}
      {tab === "events" && <EventsTab vm={vm} />}
      {tab === "cloud-init" && <CloudInitTab vm={vm} />}
    </section>
  );
}

function Actions({ vm, onDeleted }: { vm: VmRecord; onDeleted: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState<VmAction | null>(null);
  const [now, setNow] = useState(() => Date.now());
  // Linked clones kept on this VM (its snapshots, or a template's disk): the gateway refuses its
  // delete, forced too, until they are gone; the dialog says so instead of sending it.
  const clones = linkedClonesOf(vm, useLive().vms.values());
  const deleteBlocked = vmDeleteBlocked(vm, clones);
  useEffect(() => {
    if (vm.state !== "stopping") return undefined;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [vm.state]);
  const act = async (action: VmAction) => {
    setError(null);
    setBusy(action);
    try {
      const updated = await runAction(vm, action);
      live.putVm(updated);
      if (action === "delete") {
        onDeleted();
        navigate("/");
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };
  const slowStop = vm.state === "stopping" && now - Date.parse(vm.updated_at) > SLOW_STOP_MS;
  return (
    <div className="vm-actions">
      <div className="button-row" role="group" aria-label="Actions">
        {ACTIONS.map((action) => (
          <button key={action} type="button" className={action === "force-stop" ? "warn" : ""}
                  disabled={!canDo(action, vm.state) || busy !== null} onClick={() => void act(action)}>
            {ACTION_LABELS[action]}
          </button>
        ))}
        <button type="button" className="danger" disabled={!canDo("delete", vm.state) || busy !== null}
                onClick={() => setConfirming(true)}>Delete</button>
      </div>
      {slowStop && (
        <p className="warning" role="status">
          The guest has not powered off yet: it may ignore the ACPI shutdown request (no ACPI daemon). It is powered
          off when the stop timeout passes; <strong>Force stop</strong> powers it off now.
        </p>
      )}
      <ProblemLine error={error} onDismiss={() => setError(null)} />
      <ConfirmDialog open={confirming} title={`Delete ${vm.name}?`} confirmLabel="Delete VM" danger
                     busy={busy !== null} disabled={Boolean(deleteBlocked)}
                     onClose={() => setConfirming(false)} onConfirm={() => { setConfirming(false); void act("delete"); }}>
        {deleteBlocked ? (
          <div id="delete-blocked" data-count={clones.length}>
            <p className="warning" role="status">{deleteBlocked}</p>
            <LinkedCloneList source={vm} clones={clones} onOpen={() => setConfirming(false)} />
          </div>
        ) : vm.state === "unknown" ? (
          <p>Node {vm.node} is offline: <strong>{vm.name}</strong> is removed now, and the node removes its disk and
            files if it comes back. This cannot be undone.</p>
        ) : (
          <p>The VM <strong>{vm.name}</strong>, its disk and its files are removed from node {vm.node || "—"}.
            This cannot be undone.</p>
        )}
      </ConfirmDialog>
    </div>
  );
}

function Overview({ vm }: { vm: VmRecord }) {
  const snapshot = useLive();
  const forwards = vm.forwards ?? [];
  return (
    <div className="overview-grid">
      <section className="card" aria-labelledby="spec-title">
        <h2 id="spec-title">Machine</h2>
        <dl className="facts wide">
          <div><dt>State</dt><dd>{vm.state}{vm.state === "pending" && typeof vm.image_progress === "number" && ` (image ${Math.round(vm.image_progress * 100)} %)`}</dd></div>
          <div><dt>Node</dt><dd>{vm.node ? <Link href="/nodes">{vm.node}</Link> : "—"}</dd></div>
          <div><dt>vCPUs</dt><dd>{vm.vcpus}</dd></div>
          <div><dt>Memory</dt><dd>{mib(vm.memory_mib)}</dd></div>
          <div><dt>Disk</dt><dd>{vm.disk_gib} GiB</dd></div>
          <div><dt>Image</dt><dd>{imageName(vm, snapshot.images)}</dd></div>
          <div><dt>OS family</dt><dd>{vm.os_type === "windows" ? `Windows${vm.windows ? ` (computer name ${vm.windows.computer_name})` : ""}` : "Linux"}</dd></div>
          <div><dt>Network</dt><dd>{vm.network?.mode ?? "none"}{vm.network?.source ? ` ${vm.network.source}` : ""}</dd></div>
          <div><dt>Created</dt><dd>{time(vm.created_at)}</dd></div>
          {vm.labels && Object.keys(vm.labels).length > 0 && <div className="wide-fact"><dt>Labels</dt><dd className="wrap">{labelsText(vm.labels)}</dd></div>}
          {vm.description && <div className="wide-fact"><dt>Description</dt><dd className="wrap">{vm.description}</dd></div>}
          <div><dt>ID</dt><dd><code>{vm.id}</code></dd></div>
        </dl>
        {vm.error && (
          <p className="problem" role="alert"><strong>{vm.error.code}</strong>: {vm.error.message}{vm.error.hint && <span className="hint"> — {vm.error.hint}</span>}</p>
        )}
      </section>
      <section className="card" aria-labelledby="access-title">
        <h2 id="access-title">Access</h2>
        {vm.ssh_command ? (
          <div className="copy-block" id="ssh-command">
            <pre><code>{vm.ssh_command}</code></pre>
            <CopyButton text={vm.ssh_command} label={`Copy SSH command of ${vm.name}`} />
          </div>
        ) : <p className="muted">No SSH forward{vm.network?.mode === "user" || vm.network?.mode === "isolated" ? " yet" : ""}.</p>}
        <dl className="facts wide">
          <div><dt>Addresses</dt><dd>{vm.guest?.addresses?.length ? vm.guest.addresses.join(", ") : "—"}</dd></div>
          <div><dt>Forwards</dt><dd>{forwards.length ? forwards.map((f) => `127.0.0.1:${f.host_port} → ${f.guest_port}${f.name ? ` (${f.name})` : ""}`).join(", ") : "—"}</dd></div>
          <div><dt>User</dt><dd>{vm.cloud_init?.user ?? "admin"}</dd></div>
          <div><dt>Ready</dt><dd>{vm.guest?.ready_at ? `${time(vm.guest.ready_at)}${vm.guest.boot_seconds ? ` (${vm.guest.boot_seconds.toFixed(1)} s)` : ""}` : "—"}</dd></div>
        </dl>
        <h3>SSH host key fingerprints</h3>
        {vm.guest?.ssh_host_keys?.length ? (
          <ul className="fingerprints">{vm.guest.ssh_host_keys.map((k) => <li key={k}><code>{k}</code></li>)}</ul>
        ) : <p className="muted">Known once cloud-init has finished in the guest.</p>}
        {vm.guest?.cloud_init_error && <p className="warning">cloud-init: {vm.guest.cloud_init_error}</p>}
      </section>
      <GuestCard vm={vm} />
    </div>
  );
}
