// Re-run cloud-init: new settings and a new instance-id, applied at the VM's next boot.
import { type FormEvent, useState } from "react";
import { ProblemError, sendJson, seg } from "../../api/client";
import type { VmRecord } from "../../api/types";
import { CodeEditor, type LineError } from "../../components/CodeEditor";
import { Field, ProblemLine } from "../../components/bits";
import { sshKeyProblem } from "../../lib/sshKey";
import { configErrorOf } from "../../lib/wizard";
import { canDo, runAction } from "../../lib/vmActions";
import { live } from "../../state/live";

export function CloudInitTab({ vm }: { vm: VmRecord }) {
  const spec = vm.cloud_init ?? {};
  const [user, setUser] = useState(spec.user ?? "admin");
  const [keys, setKeys] = useState((spec.ssh_authorized_keys ?? []).join("\n"));
  const [hostname, setHostname] = useState(spec.hostname ?? "");
  const [password, setPassword] = useState("");
  const [userData, setUserData] = useState(spec.user_data ?? "");
  const [keyError, setKeyError] = useState("");
  const [configError, setConfigError] = useState<LineError | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const list = keys.split("\n").map((k) => k.trim()).filter(Boolean);
    const bad = list.map((k, i) => [i, sshKeyProblem(k)] as const).find(([, p]) => p);
    if (bad) {
      setKeyError(`Key ${bad[0] + 1}: ${bad[1]}`);
      return;
    }
    setKeyError("");
    setError(null);
    setConfigError(null);
    try {
      const updated = await sendJson<VmRecord>("POST", `/v1/vms/${seg(vm.id)}/cloud-init`, {
        user, ssh_authorized_keys: list, ...(hostname ? { hostname } : {}), ...(password ? { password } : {}),
        ...(userData.trim() ? { user_data: userData } : {}),
      });
      live.putVm(updated);
      setDone(true);
    } catch (err) {
      const config = err instanceof ProblemError ? configErrorOf(err.code, err.body, err.message) : null;
      if (config) setConfigError({ line: config.line ?? 0, column: config.column, message: config.message });
      else setError(err);
    }
  };

  return (
    <section className="card" aria-labelledby="ci-title">
      <h2 id="ci-title">Re-run cloud-init</h2>
      <p className="muted">Saving gives the VM a new cloud-init instance-id: cloud-init runs again, with these settings, at the next boot.</p>
      <form className="stack" onSubmit={(e) => void submit(e)}>
        <div className="grid-fields">
          <Field label="User" htmlFor="rerun-user"><input id="rerun-user" value={user} onChange={(e) => setUser(e.target.value)} /></Field>
          <Field label="Hostname" htmlFor="rerun-hostname"><input id="rerun-hostname" value={hostname} onChange={(e) => setHostname(e.target.value)} /></Field>
          <Field label="New password (optional)" htmlFor="rerun-password">
            <input id="rerun-password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
          </Field>
        </div>
        <Field label="SSH public keys (one per line)" htmlFor="rerun-keys" error={keyError}>
          <textarea id="rerun-keys" rows={3} value={keys} spellCheck={false} onChange={(e) => setKeys(e.target.value)} />
        </Field>
        <CodeEditor id="rerun-user-data" label="Custom cloud-config (optional)" value={userData}
                    onChange={(v) => { setUserData(v); setConfigError(null); }} error={configError} />
        <ProblemLine error={error} onDismiss={() => setError(null)} />
        <div className="button-row">
          <button type="submit" className="primary">Save for the next boot</button>
          {done && canDo("reboot", vm.state) && (
            <button type="button" onClick={() => void runAction(vm, "reboot").then((v) => live.putVm(v)).catch(setError)}>Reboot now</button>
          )}
        </div>
        {done && <p className="success" role="status">Saved: cloud-init runs again at the next boot.</p>}
      </form>
    </section>
  );
}
