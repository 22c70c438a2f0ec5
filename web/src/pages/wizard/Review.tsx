// The Review step: everything the VM will be, and the same request as an lq command and a curl.
import { CopyBlock } from "../../components/bits";
import { windowsFileFields, windowsFileText, windowsSection } from "../../lib/windows";
import { curlCommand, type Draft, lqCommand, reviewRows, usesCloudInit, usesWindowsSetup, type WizardContext } from "../../lib/wizard";

export function ReviewStep({ draft, ctx, origin }: { draft: Draft; ctx: WizardContext; origin: string }) {
  const rows = reviewRows(draft, ctx);
  const custom = draft.customConfig && usesCloudInit(draft);
  // Settings lq has no flag for go in a --windows file, shown here to save.
  const windowsFile = usesWindowsSetup(draft) ? windowsFileFields(windowsSection(draft.win, draft.name)) : {};
  const needsWindowsFile = Object.keys(windowsFile).length > 0;
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
      {custom && (
        <details>
          <summary>Custom cloud-config</summary>
          <pre className="config-preview">{draft.userData}</pre>
        </details>
      )}
      <h3>The same with the CLI</h3>
      {custom && <p className="note">Save the custom cloud-config as <code>user-data.yaml</code> first.</p>}
      {usesCloudInit(draft) && !draft.guestAgent && (
        <p className="note">lq has no option to leave the guest agent out yet: the curl call below carries it.</p>
      )}
      {needsWindowsFile && (
        <>
          <p className="note">Save these Windows settings as <code>windows.yaml</code> first:</p>
          <CopyBlock text={windowsFileText(windowsFile)} label="Copy windows.yaml" id="review-windows-file" />
        </>
      )}
      <CopyBlock text={lqCommand(draft, ctx)} label="Copy lq command" id="review-lq" />
      <h3>The same with curl</h3>
      <CopyBlock text={curlCommand(draft, origin, ctx)} label="Copy curl command" id="review-curl" />
    </div>
  );
}
