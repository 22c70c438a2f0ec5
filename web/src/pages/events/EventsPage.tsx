// Every event, live, with filters: kind, and free text (VM, image or node name or id).
import { useEffect, useMemo, useState } from "react";
import { EventStream } from "../../api/sse";
import type { LqEvent } from "../../api/types";
import { EventList, kindOf, summary } from "./EventList";

const WINDOWS = [
  { value: "600", label: "last 10 minutes" },
  { value: "3600", label: "last hour" },
  { value: "86400", label: "last day" },
  { value: "", label: "new events only" },
];

export function EventsPage() {
  const [events, setEvents] = useState<LqEvent[]>([]);
  const [since, setSince] = useState("3600");
  const [kind, setKind] = useState("");
  const [text, setText] = useState("");
  const [hideProgress, setHideProgress] = useState(true);

  useEffect(() => {
    setEvents([]);
    const stream = new EventStream({
      query: since ? `since=${since}` : "",
      onEvent: (event) => setEvents((list) => (list.some((e) => e.id === event.id) ? list : [...list, event].slice(-2000))),
    });
    stream.start();
    return () => stream.stop();
  }, [since]);

  const shown = useMemo(() => {
    const needle = text.trim().toLowerCase();
    return events.filter((event) => {
      if (kind && kindOf(event.type) !== kind) return false;
      if (hideProgress && event.type === "image.progress") return false;
      if (!needle) return true;
      return [event.vm_id, event.image_id, event.node, event.name, summary(event)]
        .some((value) => typeof value === "string" && value.toLowerCase().includes(needle));
    });
  }, [events, kind, text, hideProgress]);

  return (
    <section className="page" aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      <form className="filters card" onSubmit={(e) => e.preventDefault()} aria-label="Filter events">
        <label>From
          <select value={since} onChange={(e) => setSince(e.target.value)}>
            {WINDOWS.map((w) => <option key={w.value} value={w.value}>{w.label}</option>)}
          </select>
        </label>
        <label>Kind
          <select value={kind} onChange={(e) => setKind(e.target.value)} id="event-kind">
            <option value="">all</option>
            <option value="vm">VMs</option>
            <option value="image">images</option>
            <option value="node">nodes</option>
            <option value="console">consoles</option>
          </select>
        </label>
        <label>Search
          <input type="search" value={text} onChange={(e) => setText(e.target.value)} placeholder="name or id" id="event-search" />
        </label>
        <label className="check"><input type="checkbox" checked={hideProgress} onChange={(e) => setHideProgress(e.target.checked)} /> Hide progress</label>
      </form>
      <p className="muted" aria-live="polite">{shown.length} of {events.length} events</p>
      <EventList events={shown} empty="No events match." />
    </section>
  );
}
