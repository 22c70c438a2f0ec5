// The VM page's view from inside the guest: its agent, OS, users, addresses (with where each
// came from), file systems and this boot's readiness phases (docs/guest-agent.md).
import type { VmRecord } from "../../api/types";
import { GuestPhases } from "../../components/GuestPhases";
import { StateBadge, UsageBar } from "../../components/bits";
import { bytes, time } from "../../lib/format";
import { addressRows, STOPPED_BY } from "../../lib/guest";

export function AgentBadge({ vm }: { vm: VmRecord }) {
  const agent = vm.guest?.agent;
  return agent?.connected
    ? <StateBadge state="ready" label={`agent connected${agent.version ? ` (${agent.version})` : ""}`} />
    : <StateBadge state="stopped" label="agent not connected" />;
}

export function GuestCard({ vm }: { vm: VmRecord }) {
  const guest = vm.guest;
  const os = guest?.os;
  const addresses = addressRows(guest);
  const filesystems = guest?.filesystems ?? [];
  const withCloudInit = vm.os_type !== "windows" && Boolean(vm.image);
  return (
    <section className="card guest-card" aria-labelledby="guest-title" data-agent={guest?.agent?.connected ? "connected" : "none"}>
      <h2 id="guest-title">Guest</h2>
      <p id="guest-agent"><AgentBadge vm={vm} />
        {guest?.agent?.connected && guest.agent.commands?.length ? <span className="muted"> · {guest.agent.commands.length} commands</span> : null}
      </p>
      {!guest?.agent?.connected && (
        <p className="muted">Without the QEMU guest agent the node knows the guest only from its serial log: no OS details,
          file systems, commands or files. Images get it at first boot unless the create opted out.</p>
      )}
      <dl className="facts wide">
        {os && (os.name || os.version) && <div><dt>OS</dt><dd id="guest-os">{[os.name, os.version].filter(Boolean).join(" ")}</dd></div>}
        {os?.kernel && <div><dt>Kernel</dt><dd>{os.kernel}</dd></div>}
        {os?.hostname && <div><dt>Host name</dt><dd>{os.hostname}</dd></div>}
        {guest?.users?.length ? <div><dt>Signed in</dt><dd>{guest.users.join(", ")}</dd></div> : null}
        {guest?.info_at && <div><dt>Read from the agent</dt><dd>{time(guest.info_at)}</dd></div>}
        {vm.stopped_by && <div><dt>Last stop</dt><dd>{STOPPED_BY[vm.stopped_by] ?? vm.stopped_by}</dd></div>}
      </dl>
      <h3>Addresses</h3>
      {addresses.length ? (
        <table className="list-table" id="guest-addresses">
          <thead><tr><th scope="col">Address</th><th scope="col">Interface</th><th scope="col">Source</th></tr></thead>
          <tbody>
            {addresses.map((a) => (
              <tr key={`${a.source}-${a.iface}-${a.address}`} data-source={a.source}>
                <td><code>{a.address}{a.prefix !== null ? `/${a.prefix}` : ""}</code></td>
                <td>{a.iface || "—"}</td>
                <td>{a.source === "agent" ? "guest agent" : "serial log"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <p className="muted">None reported yet.</p>}
      {filesystems.length > 0 && (
        <>
          <h3>File systems</h3>
          <ul className="plain-list" id="guest-filesystems">
            {filesystems.map((fs) => (
              <li key={fs.mount} data-mount={fs.mount}>
                {fs.total_bytes ? (
                  <UsageBar label={`${fs.mount}${fs.type ? ` (${fs.type})` : ""}`} used={fs.used_bytes ?? 0} total={fs.total_bytes}
                            detail={`${bytes(fs.used_bytes ?? 0)} of ${bytes(fs.total_bytes)} used`} />
                ) : <span>{fs.mount}{fs.type ? ` (${fs.type})` : ""}: size unknown</span>}
              </li>
            ))}
          </ul>
        </>
      )}
      <h3>Readiness phases (this boot)</h3>
      {guest?.phases && Object.keys(guest.phases).length
        ? <GuestPhases vm={vm} withCloudInit={withCloudInit} id="guest-phases" />
        : <p className="muted">None recorded yet.</p>}
    </section>
  );
}
