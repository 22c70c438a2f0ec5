// Sign-in with the API token (kept in this browser's localStorage, shared with console pages).
import { type FormEvent, useState } from "react";
import { Dialog } from "./Dialog";

export function SignIn({ open, error, onSubmit }: { open: boolean; error: string; onSubmit: (token: string) => void }) {
  const [token, setTokenText] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const value = token.trim();
    if (!value) return;
    setTokenText("");
    onSubmit(value);
  };
  return (
    <Dialog open={open} title="Sign in" onClose={() => undefined} id="token-dialog" required>
      <form onSubmit={submit} className="stack">
        <p>
          Paste the API token: <code>LQ_API_TOKEN</code>, or the content of <code>&lt;data dir&gt;/api-token</code>
          {" "}(<code>lq-local</code> prints where it is). It stays in this browser only.
        </p>
        <label htmlFor="token-input">API token</label>
        <input id="token-input" type="password" autoComplete="current-password" value={token}
               onChange={(e) => setTokenText(e.target.value)} required aria-describedby="token-error" />
        <p id="token-error" className="field-error" role="alert">{error}</p>
        <div className="dialog-actions">
          <button id="token-save" type="submit" className="primary">Sign in</button>
        </div>
      </form>
    </Dialog>
  );
}
