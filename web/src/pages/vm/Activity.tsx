// What happened lately to one section of a VM (its events since the page was opened), so each
// day-2 action shows its progress and, when it fails, the error with its hint.
import type { VmRecord } from "../../api/types";
import { latestFailure, sectionEvents } from "../../lib/day2";
import { useLive } from "../../state/live";
import { EventList } from "../events/EventList";

export function Activity({ vm, section, alsoVms = [] }: { vm: VmRecord; section: string; alsoVms?: readonly string[] }) {
  const snapshot = useLive();
  const events = sectionEvents(snapshot.events, vm.id, section, alsoVms).slice(-20);
  const failed = latestFailure(events);
  return (
    <div className={`activity activity-${section}`} aria-live="polite">
      {failed?.error && (
        <p className="problem" role="alert"><strong className="problem-code">{failed.error.code}</strong>: {failed.error.message}
          {failed.error.hint && <span className="hint"> — {failed.error.hint}</span>}</p>
      )}
      <EventList events={events} empty="Nothing since this page was opened." />
    </div>
  );
}
