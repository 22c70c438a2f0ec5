// Nodes: status, capacity and allocation, warnings, and the VMs on each.
import { Empty, StateBadge, UsageBar } from "../../components/bits";
import { mib, time } from "../../lib/format";
import { Link } from "../../lib/router";
import { useLive } from "../../state/live";

export function NodesPage() {
  const snapshot = useLive();
  return (
    <section className="page" aria-labelledby="nodes-title">
      <h1 id="nodes-title">Nodes</h1>
      {snapshot.loaded && snapshot.nodes.length === 0 && <Empty>No node is online: start a node agent (lq-local starts one).</Empty>}
      <ul className="cards node-list" id="nodes">
        {snapshot.nodes.map((node) => {
          const cpuCap = node.vcpus_capacity ?? node.vcpus ?? 0;
          const memCap = node.memory_mib_capacity ?? node.memory_mib ?? 0;
          const vms = (node.vm_ids ?? []).map((id) => snapshot.vms.get(id)).filter((vm) => vm !== undefined);
          return (
            <li key={node.id} className="card node-card" data-node-id={node.id} data-status={node.status}>
              <div className="image-head">
                <h2 className="node-name">{node.id}</h2>
                <StateBadge state={node.status} />
              </div>
              <p className="muted">{[node.hostname, node.virt_type && `${node.virt_type}`, node.version && `v${node.version}`].filter(Boolean).join(" · ")}</p>
              <UsageBar label="vCPUs" used={node.allocated_vcpus ?? 0} total={cpuCap}
                        detail={`${node.allocated_vcpus ?? 0} of ${cpuCap} allocated${node.cpu_allocation_ratio && node.cpu_allocation_ratio !== 1 ? ` (${node.vcpus} physical × ${node.cpu_allocation_ratio})` : ""}`} />
              <UsageBar label="Memory" used={node.allocated_memory_mib ?? 0} total={memCap}
                        detail={`${mib(node.allocated_memory_mib ?? 0)} of ${mib(memCap)} allocated${node.memory_allocation_ratio && node.memory_allocation_ratio !== 1 ? ` (× ${node.memory_allocation_ratio})` : ""}`} />
              <p className="muted">Disk free {node.disk_free_gib?.toFixed(1) ?? "—"} GiB · last heartbeat {time(node.last_heartbeat)}</p>
              {(node.warnings ?? []).map((w) => (
                <p key={w.code} className="warning" data-code={w.code}><strong>{w.code}</strong>: {w.message}{w.hint && <span className="hint"> — {w.hint}</span>}</p>
              ))}
              <h3>VMs ({node.vm_count ?? vms.length})</h3>
              {vms.length ? (
                <ul className="inline-list">
                  {vms.map((vm) => <li key={vm.id}><Link href={`/vms/${encodeURIComponent(vm.name)}`}>{vm.name}</Link> <StateBadge state={vm.state} /></li>)}
                </ul>
              ) : <p className="muted">None.</p>}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
