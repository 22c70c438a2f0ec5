// Small pieces used on every page.
import { type ReactNode, useState } from "react";
import { ProblemError } from "../api/client";
import { percent } from "../lib/format";

export function StateBadge({ state, label }: { state: string; label?: string }) {
  return <span className={`badge state-${state}`} data-state={state}>{label ?? state}</span>;
}

/** A problem as one line: code, detail, then the hint (long text wraps, never overflows). */
export function ProblemLine({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (!error) return null;
  let content: ReactNode;
  if (error instanceof ProblemError) {
    content = (
      <>
        <strong className="problem-code">{error.code}</strong>: {error.message}
        {error.hint && <span className="hint"> — {error.hint}</span>}
      </>
    );
  } else {
    content = <>error: {error instanceof Error ? error.message : String(error)}</>;
  }
  return (
    <div className="problem" role="alert">
      <p className="problem-text" title={error instanceof ProblemError && error.requestId ? `request id ${error.requestId}` : undefined}>{content}</p>
      {onDismiss && <button type="button" className="icon" aria-label="Dismiss error" onClick={onDismiss}>×</button>}
    </div>
  );
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // clipboard API refused (insecure origin): select-and-copy fallback
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <button type="button" className="small" aria-label={label} onClick={() => void copy()}>
      {copied ? "Copied" : "Copy"}
    </button>
  );
}

/** Text that can be copied, shown as code. */
export function CopyBlock({ text, label, id }: { text: string; label: string; id?: string }) {
  return (
    <div className="copy-block">
      <pre id={id}><code>{text}</code></pre>
      <CopyButton text={text} label={label} />
    </div>
  );
}

/** A horizontal bar: `used` of `total`, with a text label (the bar alone says nothing to AT). */
export function UsageBar({ used, total, label, detail }: { used: number; total: number; label: string; detail: string }) {
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  const level = pct >= 90 ? "high" : pct >= 70 ? "mid" : "low";
  return (
    <div className="usage">
      <div className="usage-label"><span>{label}</span><span>{detail}</span></div>
      <div className="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={total}
           aria-valuenow={used} aria-valuetext={detail}>
        <div className={`bar-fill ${level}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function ProgressBar({ done, total, label }: { done: number; total: number | null | undefined; label: string }) {
  const pct = percent(done, total);
  return (
    <div className="progress-wrap">
      <div className="bar" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100}
           aria-valuenow={pct ?? undefined}>
        <div className={`bar-fill ${pct === null ? "indeterminate" : "low"}`} style={{ width: `${pct ?? 100}%` }} />
      </div>
      <span className="progress-text">{pct === null ? "…" : `${pct} %`}</span>
    </div>
  );
}

export function Field({ label, htmlFor, error, hint, children }: {
  label: string; htmlFor: string; error?: string; hint?: ReactNode; children: ReactNode;
}) {
  return (
    <div className={`field${error ? " invalid" : ""}`}>
      <label htmlFor={htmlFor}>{label}</label>
      {children}
      {hint && !error && <p className="field-hint" id={`${htmlFor}-hint`}>{hint}</p>}
      {error && <p className="field-error" id={`${htmlFor}-error`} role="alert">{error}</p>}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}
