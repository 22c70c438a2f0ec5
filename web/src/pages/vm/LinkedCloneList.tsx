// The linked clones kept on a VM: each a link, what it is kept on and its state (the Clone tab
// and the VM's delete dialog show the same list).
import type { VmRecord } from "../../api/types";
import { StateBadge } from "../../components/bits";
import { cloneBaseName } from "../../lib/day2";
import { Link } from "../../lib/router";

export function LinkedCloneList({ source, clones, onOpen }: {
  source: VmRecord; clones: readonly VmRecord[]; onOpen?: () => void;
}) {
  return (
    <ul className="plain-list">
      {clones.map((c) => (
        <li key={c.id} data-vm-name={c.name} data-state={c.state}>
          <Link href={`/vms/${encodeURIComponent(c.name)}`} onClick={onOpen}>{c.name}</Link> ({cloneBaseName(source, c)}){" "}
          <StateBadge state={c.state} />
        </li>
      ))}
    </ul>
  );
}
