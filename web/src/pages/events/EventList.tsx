// Events as a timeline: newest first, each a one-line summary with its time.
import type { LqEvent } from "../../api/types";
import { day2Summary } from "../../lib/day2";
import { clock, bytes } from "../../lib/format";

export function summary(event: LqEvent): string {
  const who = event.name || event.vm_id || event.image_id || event.node || "";
  switch (event.type) {
    case "vm.state_changed":
      return `${who}: ${event.previous ? `${event.previous} → ` : ""}${event.state}${event.reason ? ` (${event.reason})` : ""}${event.error ? ` — ${event.error.code}: ${event.error.message}` : ""}`;
    case "vm.guest_ready":
      return `${who}: guest ready${event.guest?.boot_seconds ? ` after ${event.guest.boot_seconds.toFixed(1)} s` : ""}`;
    case "vm.action_failed":
      return `${who}: ${event.action} failed — ${event.error?.code}: ${event.error?.message}`;
    case "vm.deleted":
      return `${who}: deleted`;
    case "node.state_changed":
      return `node ${event.node}: ${event.online ? "online" : "offline"}`;
    case "image.state_changed":
      return `image ${who}: ${event.previous ? `${event.previous} → ` : ""}${event.state}${event.reason ? ` (${event.reason})` : ""}`;
    case "image.progress":
      return `image ${event.image_id}${event.node ? ` on ${event.node}` : ""}: ${bytes(event.bytes_done)} of ${bytes(event.bytes_total)}`;
    case "console.session_started":
      return `console opened on ${event.vm_id}${event.user ? ` by ${event.user}` : ""}`;
    case "console.session_ended":
      return `console closed on ${event.vm_id} (${event.close_code}${event.reason ? ` ${event.reason}` : ""})`;
    default:
      return day2Summary(event) ?? event.type;
  }
}

export function kindOf(type: string): string {
  return type.split(".")[0];
}

export function EventList({ events, empty }: { events: readonly LqEvent[]; empty: string }) {
  if (events.length === 0) return <p className="empty">{empty}</p>;
  return (
    <ol className="timeline" reversed>
      {[...events].reverse().map((event) => (
        <li key={event.id || `${event.type}-${event.time}`} className={`event kind-${kindOf(event.type)}${event.error ? " failed" : ""}`}
            data-type={event.type}>
          <time dateTime={event.time}>{clock(event.time)}</time>
          <span className="event-type">{event.type}</span>
          <span className="event-text">{summary(event)}</span>
        </li>
      ))}
    </ol>
  );
}
