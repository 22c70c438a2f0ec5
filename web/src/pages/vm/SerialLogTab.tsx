// The serial console log, tailed: the API says the log's size (X-Log-Size), so each poll asks
// only whether it grew and then for the new bytes.
import { useEffect, useRef, useState } from "react";
import { request, seg } from "../../api/client";
import type { VmRecord } from "../../api/types";
import { ProblemLine } from "../../components/bits";

const POLL_MS = 2000;
const TAIL_BYTES = 64 * 1024;
const KEEP_CHARS = 256 * 1024;

export function SerialLogTab({ vm }: { vm: VmRecord }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);

  useEffect(() => {
    let size = -1;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const path = `/v1/vms/${seg(vm.id)}/console-log`;
    const fetchTail = async (maxBytes: number) => {
      const response = await request("GET", `${path}?max_bytes=${maxBytes}`, { headers: { Accept: "text/plain" } });
      const body = await response.text();
      const total = Number(response.headers.get("X-Log-Size") ?? body.length);
      return { body, total };
    };
    const poll = async () => {
      try {
        if (size < 0) {
          const { body, total } = await fetchTail(TAIL_BYTES);
          size = total;
          setText(body);
        } else {
          const { total } = await fetchTail(1);
          if (total < size) {
            size = -1; // replaced (VM recreated): read the tail again
          } else if (total > size) {
            const { body, total: now } = await fetchTail(Math.min(total - size, 4 * 1024 * 1024));
            size = now;
            setText((old) => (old + body).slice(-KEEP_CHARS));
          }
        }
        setError(null);
      } catch (err) {
        setError(err);
      }
      if (!stopped) timer = setTimeout(() => void poll(), POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [vm.id]);

  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);

  return (
    <section className="card" aria-labelledby="log-title">
      <div className="page-head">
        <h2 id="log-title">Serial console log</h2>
        <label className="check"><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow</label>
      </div>
      <ProblemLine error={error} />
      <pre className="serial-log" ref={pre} tabIndex={0} aria-label="Serial console output">{text || "(empty so far)"}</pre>
    </section>
  );
}
