// A boot's readiness phases with the time each was reached (guest.phases), and a clock that
// ticks while the VM is on its way.
import { useEffect, useState } from "react";
import type { VmRecord } from "../api/types";
import { clock } from "../lib/format";
import { duration, phaseRows } from "../lib/guest";

/** The time now, re-read every second while `ticking`. */
export function useNow(ticking: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!ticking) return undefined;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [ticking]);
  return now;
}

export function GuestPhases({ vm, withCloudInit, id }: { vm: VmRecord; withCloudInit: boolean; id?: string }) {
  const stopped = vm.state === "error" || vm.state === "stopped" || vm.state === "stopping" || vm.state === "unknown";
  const rows = phaseRows(vm.guest, { withCloudInit, failed: stopped });
  return (
    <ol className="phases guest-phases" id={id} aria-label="Readiness phases" data-phase={vm.guest?.phase ?? ""}>
      {rows.map((row) => (
        <li key={row.key} className={`phase ${row.status}`} data-phase={row.key}
            aria-current={row.status === "current" ? "step" : undefined}>
          <span className="phase-mark" aria-hidden="true">{row.status === "done" ? "✓" : row.status === "current" ? "●" : "○"}</span>
          <span className="phase-title">{row.title}</span>
          <span className="phase-text">{row.text}</span>
          {row.at && (
            <span className="phase-time">
              <time dateTime={row.at}>{clock(row.at)}</time>
              {row.offsetS !== null && row.offsetS >= 0.05 && <> · +{row.offsetS < 60 ? `${row.offsetS.toFixed(1)} s` : duration(row.offsetS)}</>}
            </span>
          )}
        </li>
      ))}
    </ol>
  );
}
