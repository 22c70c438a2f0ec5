// The Review step: everything the VM will be, and the same request as an lq command and a curl.
import { CopyBlock } from "../../components/bits";
import { curlCommand, type Draft, lqCommand, reviewRows, type WizardContext } from "../../lib/wizard";

export function ReviewStep({ draft, ctx, origin }: { draft: Draft; ctx: WizardContext; origin: string }) {
  const rows = reviewRows(draft, ctx);
  return (
    <div className="step-body review">
      <dl className="review-list" aria-label="Summary">
        {rows.map((row) => (
          <div key={row.label} className="review-row" data-row={row.label}>
            <dt>{row.label}</dt>
            <dd>{row.value}</dd>
          </div>
        ))}
      </dl>
      {draft.customConfig && draft.boot === "cloud" && (
        <details>
          <summary>Custom cloud-config</summary>
          <pre className="config-preview">{draft.userData}</pre>
        </details>
      )}
      <h3>The same with the CLI</h3>
      {draft.customConfig && draft.boot === "cloud" && <p className="note">Save the custom cloud-config as <code>user-data.yaml</code> first.</p>}
      <CopyBlock text={lqCommand(draft, ctx)} label="Copy lq command" id="review-lq" />
      <h3>The same with curl</h3>
      <CopyBlock text={curlCommand(draft, origin)} label="Copy curl command" id="review-curl" />
    </div>
  );
}
