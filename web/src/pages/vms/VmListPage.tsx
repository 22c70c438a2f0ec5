// The VM list: a page of VMs from GET /v1/vms (filtered by state, node and labels, in creation
// order, `limit` a page and `next_cursor` to the next), each shown live from the event stream,
// with its state, node, image, labels and how to reach it.
import { useEffect, useRef, useState } from "react";
import { getJson } from "../../api/client";
import { normVm, type VmRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { CopyButton, Empty, ProblemLine, ProgressBar, StateBadge } from "../../components/bits";
import { mib } from "../../lib/format";
import {
  type ListFilters, filtersFromUrl, filtersToUrl, labelFilters, labelsText, listQuery, PAGE_SIZES, VM_STATES,
} from "../../lib/vmList";
import { Link } from "../../lib/router";
import { canDo, imageName, runAction, type VmAction } from "../../lib/vmActions";
import { live, useLive } from "../../state/live";

export function VmListPage() {
  const snapshot = useLive();
  const [error, setError] = useState<unknown>(null);
  const [deleting, setDeleting] = useState<VmRecord | null>(null);
  const [filters, setFilters] = useState<ListFilters>(() => filtersFromUrl(window.location.search));
  const [labelsDraft, setLabelsDraft] = useState(filters.labels);
  const [cursors, setCursors] = useState<(string | null)[]>([null]); // the cursor of each page seen
  const [page, setPage] = useState<{ items: VmRecord[]; next: string | null; loaded: boolean }>({ items: [], next: null, loaded: false });
  const [listError, setListError] = useState<unknown>(null);
  const cursor = cursors[cursors.length - 1];
  const labelError = labelFilters(labelsDraft).error;

  // The page is asked again when the live view changes (a VM made, deleted or changing state
  // may enter or leave it), at most every 300 ms.
  const version = useRef(0);
  useEffect(() => {
    const mine = ++version.current;
    const timer = setTimeout(() => {
      getJson<{ items: VmRecord[]; next_cursor?: string | null }>(`/v1/vms?${listQuery(filters, cursor)}`)
        .then((answer) => {
          if (mine !== version.current) return;
          setPage({ items: answer.items.map(normVm), next: answer.next_cursor ?? null, loaded: true });
          setListError(null);
        })
        .catch((err: unknown) => { if (mine === version.current) setListError(err); });
    }, page.loaded ? 300 : 0);
    return () => clearTimeout(timer);
  }, [filters, cursor, snapshot.vms]);

  const apply = (patch: Partial<ListFilters>) => {
    const next = { ...filters, ...patch };
    setFilters(next);
    setCursors([null]);
    window.history.replaceState(null, "", `${window.location.pathname}${filtersToUrl(next)}`);
  };
  // Each VM as the event stream last told it; one the stream saw deleted is left out.
  const vms = page.items
    .map((vm) => snapshot.vms.get(vm.id) ?? (snapshot.loaded ? null : vm))
    .filter((vm): vm is VmRecord => vm !== null);
  const filtered = Boolean(filters.state || filters.node || filters.labels);

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
      <form className="filters" aria-label="Filter VMs" onSubmit={(e) => { e.preventDefault(); if (!labelError) apply({ labels: labelsDraft }); }}>
        <div className="field">
          <label htmlFor="filter-state">State</label>
          <select id="filter-state" value={filters.state} onChange={(e) => apply({ state: e.target.value })}>
            <option value="">any</option>
            {VM_STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-node">Node</label>
          <select id="filter-node" value={filters.node} onChange={(e) => apply({ node: e.target.value })}>
            <option value="">any</option>
            {snapshot.nodes.map((n) => <option key={n.id} value={n.id}>{n.id}{n.status !== "online" ? ` (${n.status})` : ""}</option>)}
            {filters.node && !snapshot.nodes.some((n) => n.id === filters.node) && <option value={filters.node}>{filters.node}</option>}
          </select>
        </div>
        <div className="field filter-labels">
          <label htmlFor="filter-labels">Labels</label>
          <input id="filter-labels" value={labelsDraft} placeholder="team=web tier" autoComplete="off" spellCheck={false}
                 aria-invalid={labelError ? true : undefined} aria-describedby="filter-labels-hint"
                 onChange={(e) => setLabelsDraft(e.target.value)} onBlur={() => { if (!labelError && labelsDraft !== filters.labels) apply({ labels: labelsDraft }); }} />
          <p className={labelError ? "field-error" : "field-hint"} id="filter-labels-hint" role={labelError ? "alert" : undefined}>
            {labelError || "key or key=value; all must match. Enter to apply."}</p>
        </div>
        <div className="field">
          <label htmlFor="filter-limit">Per page</label>
          <select id="filter-limit" value={filters.limit} onChange={(e) => apply({ limit: Number(e.target.value) })}>
            {[...new Set([...PAGE_SIZES, filters.limit])].sort((a, b) => a - b).map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </div>
        {filtered && <button type="button" className="small" onClick={() => { setLabelsDraft(""); apply({ state: "", node: "", labels: "" }); }}>Clear filters</button>}
      </form>
      <ProblemLine error={listError} />
      {page.loaded && filtered && vms.length === 0 && <Empty>No VM matches these filters.</Empty>}
      {snapshot.loaded && page.loaded && !filtered && cursors.length === 1 && vms.length === 0 && (
        <Empty>No VMs yet. <Link href="/vms/new">Create one with the wizard</Link>; it needs an image —{" "}
          <Link href="/images">upload one or download one from the catalog</Link>.</Empty>
      )}
      <ul className="cards vm-list" id="vms">
        {vms.map((vm) => (
          <li key={vm.id} className="card vm-row" data-vm-id={vm.id} data-vm-name={vm.name} data-state={vm.state}>
            <div className="vm-row-main">
              <Link href={`/vms/${encodeURIComponent(vm.name)}`} className="vm-name">{vm.name}</Link>
              <StateBadge state={vm.state} />
              {vm.template && <span className="badge template" title="Frozen: the base of linked clones">template</span>}
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
            {vm.labels && Object.keys(vm.labels).length > 0 && <p className="labels" aria-label={`Labels of ${vm.name}`}>{labelsText(vm.labels)}</p>}
            {vm.state === "unknown" && <p className="warning vm-unknown">Node {vm.node} is offline: the VM's real state is not known.</p>}
            {vm.error && vm.state === "error" && <p className="vm-error">{vm.error.code}: {vm.error.message}</p>}
            <div className="row-actions">
              <button type="button" className="small" disabled={!canDo("start", vm.state) || Boolean(vm.template)}
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
      {(cursors.length > 1 || page.next) && (
        <nav className="pager" aria-label="Pages">
          <button type="button" disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>Previous</button>
          <span>Page {cursors.length}</span>
          <button type="button" id="vms-next" disabled={!page.next} onClick={() => page.next && setCursors((c) => [...c, page.next])}>Next</button>
        </nav>
      )}
      <ConfirmDialog open={deleting !== null} title={`Delete ${deleting?.name ?? ""}?`} confirmLabel="Delete VM" danger
                     onClose={() => setDeleting(null)}
                     onConfirm={() => { if (deleting) void act(deleting, "delete"); setDeleting(null); }}>
        <p>The VM, its disk and its files are removed. This cannot be undone.</p>
      </ConfirmDialog>
    </section>
  );
}
