// The VM's events since it was created, then live.
import { useEffect, useState } from "react";
import { EventStream } from "../../api/sse";
import type { LqEvent, VmRecord } from "../../api/types";
import { EventList } from "../events/EventList";

export function EventsTab({ vm }: { vm: VmRecord }) {
  const [events, setEvents] = useState<LqEvent[]>([]);
  useEffect(() => {
    setEvents([]);
    const since = new Date(Date.parse(vm.created_at) - 5000).toISOString();
    const stream = new EventStream({
      query: `vm=${encodeURIComponent(vm.id)}&since=${encodeURIComponent(since)}`,
      onEvent: (event) => setEvents((list) => (list.some((e) => e.id === event.id) ? list : [...list, event].slice(-1000))),
    });
    stream.start();
    return () => stream.stop();
  }, [vm.id, vm.created_at]);
  return (
    <section className="card" aria-labelledby="vm-events-title">
      <h2 id="vm-events-title">Events</h2>
      <EventList events={events} empty="No events yet." />
    </section>
  );
}
