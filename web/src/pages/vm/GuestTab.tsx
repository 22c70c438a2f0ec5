// Acting inside the guest through its QEMU guest agent: run a command, set a user's password,
// copy a file in or out (POST /exec, POST /password, PUT/GET /files). A VM whose agent is not
// connected answers 409 agent_unavailable, shown with its hint like any problem.
import { type FormEvent, useState } from "react";
import { request, seg, sendJson } from "../../api/client";
import type { components } from "../../api/schema";
import type { VmRecord } from "../../api/types";
import { Field, ProblemLine } from "../../components/bits";
import { bytes } from "../../lib/format";
import { commandOf } from "../../lib/guest";
import { AgentBadge } from "./GuestCard";
import { useAction } from "./useAction";

type ExecResult = components["schemas"]["ExecResult"];
type FileWritten = components["schemas"]["FileWritten"];

const GUEST_PATH = /^(\/|[A-Za-z]:[\\/])/;

export function GuestTab({ vm }: { vm: VmRecord }) {
  return (
    <div className="overview-grid guest-tab">
      <section className="card" aria-labelledby="exec-title">
        <h2 id="exec-title">Run a command</h2>
        <p><AgentBadge vm={vm} /></p>
        <RunCommand vm={vm} />
      </section>
      <section className="card" aria-labelledby="files-title">
        <h2 id="files-title">Files</h2>
        <FileCopy vm={vm} />
        <h2 id="password-title">Set a password</h2>
        <SetPassword vm={vm} />
      </section>
    </div>
  );
}

function RunCommand({ vm }: { vm: VmRecord }) {
  const windows = vm.os_type === "windows";
  const [line, setLine] = useState("");
  const [viaShell, setViaShell] = useState(true);
  const [input, setInput] = useState("");
  const [timeout, setTimeoutS] = useState("30");
  const [fieldError, setFieldError] = useState("");
  const [result, setResult] = useState<ExecResult | null>(null);
  const { busy, problem, clearProblem, run: send } = useAction();
  const run = async (e: FormEvent) => {
    e.preventDefault();
    clearProblem();
    let command: string[];
    try {
      command = commandOf(line.trim(), viaShell, windows ? "windows" : "linux");
    } catch (err) {
      setFieldError(`The command cannot be read: ${(err as Error).message}.`);
      return;
    }
    const seconds = Number(timeout);
    if (!line.trim() || command.length === 0) return setFieldError("Type a command.");
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) return setFieldError("A timeout from 1 to 600 seconds.");
    setFieldError("");
    setResult(null);
    await send(async () => {
      setResult(await sendJson<ExecResult>("POST", `/v1/vms/${seg(vm.id)}/exec`,
        { command, ...(input ? { input } : {}), timeout_s: seconds }));
    });
  };
  return (
    <form onSubmit={(e) => void run(e)} noValidate>
      <Field label="Command" htmlFor="exec-command" error={fieldError || undefined}
             hint={viaShell ? `Run by ${windows ? "cmd.exe /c" : "sh -c"}: pipes, globs and variables work.` : "A program and its arguments (quotes group words); no shell."}>
        <input id="exec-command" value={line} autoComplete="off" spellCheck={false}
               placeholder={windows ? "ipconfig /all" : "cat /etc/os-release"} onChange={(e) => setLine(e.target.value)} />
      </Field>
      <label className="check">
        <input type="checkbox" id="exec-shell" checked={viaShell} onChange={(e) => setViaShell(e.target.checked)} />
        Through the shell ({windows ? "cmd.exe /c" : "sh -c"})
      </label>
      <details className="advanced">
        <summary>Input and timeout</summary>
        <Field label="Standard input (optional)" htmlFor="exec-input">
          <textarea id="exec-input" rows={3} value={input} spellCheck={false} onChange={(e) => setInput(e.target.value)} />
        </Field>
        <Field label="Timeout (seconds)" htmlFor="exec-timeout">
          <input id="exec-timeout" type="number" min={1} max={600} value={timeout} onChange={(e) => setTimeoutS(e.target.value)} />
        </Field>
      </details>
      <p><button type="submit" className="primary" id="exec-run" disabled={busy}>{busy ? "Running…" : "Run"}</button></p>
      <ProblemLine error={problem} onDismiss={clearProblem} />
      {result && <ExecOutput result={result} />}
    </form>
  );
}

export function ExecOutput({ result }: { result: ExecResult }) {
  const ended = result.exit_code !== null && result.exit_code !== undefined
    ? `exit code ${result.exit_code}` : result.signal ? `killed by signal ${result.signal}` : "no exit code";
  return (
    <div className="exec-result" id="exec-result" data-exit-code={result.exit_code ?? ""} role="status">
      <p><strong>{ended}</strong>{typeof result.duration_s === "number" ? ` · ${result.duration_s.toFixed(2)} s` : ""}
        {result.truncated ? " · output truncated (the API keeps the first part)" : ""}</p>
      {result.stdout ? <pre className="exec-output" id="exec-stdout" aria-label="Standard output">{result.stdout}</pre> : <p className="muted">No output.</p>}
      {result.stderr && <pre className="exec-output stderr" id="exec-stderr" aria-label="Standard error">{result.stderr}</pre>}
    </div>
  );
}

function SetPassword({ vm }: { vm: VmRecord }) {
  const [user, setUser] = useState(vm.os_type === "windows" ? (vm.windows?.admin_user ?? "admin") : (vm.cloud_init?.user ?? "admin"));
  const [password, setPassword] = useState("");
  const [done, setDone] = useState("");
  const { busy, problem, clearProblem, run } = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!user || !password) return;
    setDone("");
    await run(async () => {
      const answer = await sendJson<{ user: string }>("POST", `/v1/vms/${seg(vm.id)}/password`, { user, password });
      setDone(`The password of ${answer.user} is set.`);
      setPassword("");
    });
  };
  return (
    <form className="inline-form" onSubmit={(e) => void submit(e)} aria-label="Set a password">
      <Field label="User" htmlFor="pw-user">
        <input id="pw-user" value={user} autoComplete="off" spellCheck={false} onChange={(e) => setUser(e.target.value.trim())} />
      </Field>
      <Field label="New password" htmlFor="pw-password">
        <input id="pw-password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
      </Field>
      <button type="submit" id="pw-set" disabled={busy || !user || !password}>Set password</button>
      <div style={{ flexBasis: "100%" }}>
        <ProblemLine error={problem} onDismiss={clearProblem} />
        {done && <p className="success" role="status">{done}</p>}
      </div>
    </form>
  );
}

function FileCopy({ vm }: { vm: VmRecord }) {
  const [path, setPath] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [pathError, setPathError] = useState("");
  const [done, setDone] = useState("");
  const { busy, problem, clearProblem, run } = useAction();
  const checkPath = (): boolean => {
    const ok = GUEST_PATH.test(path);
    setPathError(ok ? "" : "An absolute path in the guest, e.g. /tmp/notes.txt or C:\\Temp\\notes.txt.");
    return ok;
  };
  const url = (target: string) => `/v1/vms/${seg(vm.id)}/files?path=${encodeURIComponent(target)}`;
  const act = async (work: () => Promise<string>) => {
    setDone("");
    await run(async () => setDone(await work()));
  };
  const upload = () => {
    if (!checkPath() || !file) return;
    void act(async () => {
      const response = await request("PUT", url(path), { rawBody: file });
      const written = (await response.json()) as FileWritten;
      return `Wrote ${bytes(written.size)} to ${written.path} (sha256 ${written.sha256.slice(0, 12)}…).`;
    });
  };
  const download = () => {
    if (!checkPath()) return;
    void act(async () => {
      const blob = await (await request("GET", url(path))).blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = path.replace(/\\/g, "/").split("/").pop() || "file";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
      return `Read ${bytes(blob.size)} from ${path}.`;
    });
  };
  return (
    <div className="file-copy">
      <Field label="Path in the guest" htmlFor="file-path" error={pathError || undefined}>
        <input id="file-path" value={path} autoComplete="off" spellCheck={false} placeholder="/tmp/notes.txt"
               onChange={(e) => setPath(e.target.value.trim())} />
      </Field>
      <div className="inline-form">
        <Field label="File to copy in" htmlFor="file-input">
          <input id="file-input" type="file" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        </Field>
        <button type="button" id="file-upload" disabled={busy || !file || !path} onClick={upload}>Copy in</button>
        <button type="button" id="file-download" disabled={busy || !path} onClick={download}>Copy out</button>
      </div>
      <ProblemLine error={problem} onDismiss={clearProblem} />
      {done && <p className="success" role="status">{done}</p>}
    </div>
  );
}
