// The unattended Windows setup fields (the `windows` section of the create request): the
// answer file the node writes on the seed media (docs/windows.md).
import { Field } from "../../components/bits";
import {
  computerNameProblem, LOCALES, TIMEZONES, WINDOWS_VERSIONS, type WindowsDraft, windowsWarnings,
} from "../../lib/windows";
import type { Draft, Errors } from "../../lib/wizard";

export function WindowsSetup({ draft, update, errors }: {
  draft: Draft; update: (patch: Partial<Draft>) => void; errors: Errors;
}) {
  const win = draft.win;
  const set = (patch: Partial<WindowsDraft>) => update({ win: { ...win, ...patch } });
  const invalid = (key: string) => (errors[`win.${key}`] ? true : undefined);
  // The NetBIOS rule is checked as the name is typed (and for the VM name it defaults to).
  const nameError = errors["win.computerName"] ?? (computerNameProblem(win.computerName, draft.name) || undefined);
  const flow = draft.boot === "iso"
    ? "Windows Setup reads Autounattend.xml from the seed media and installs unattended (the disk is wiped)."
    : "A sysprepped image reads unattend.xml from the seed media in its specialize and oobeSystem passes.";
  return (
    <div className="windows-setup">
      <p className="note">{flow}</p>
      <div className="grid-fields">
        <Field label="Computer name" htmlFor="win-computer-name" error={nameError}
               hint={`NetBIOS: 1-15 letters, digits and '-'. Default: the VM name (${draft.name || "—"}).`}>
          <input id="win-computer-name" value={win.computerName} autoComplete="off" spellCheck={false}
                 aria-invalid={nameError ? true : undefined} placeholder={draft.name}
                 onChange={(e) => set({ computerName: e.target.value.trim() })} />
        </Field>
        <Field label="Administrator user" htmlFor="win-admin-user" error={errors["win.adminUser"]}
               hint="A local administrator account (with a password).">
          <input id="win-admin-user" value={win.adminUser} autoComplete="off" spellCheck={false}
                 aria-invalid={invalid("adminUser")} onChange={(e) => set({ adminUser: e.target.value.trim() })} />
        </Field>
        <Field label="Administrator password (optional)" htmlFor="win-admin-password" error={errors["win.adminPassword"]}
               hint="Sealed for the node at the gateway; never on the VM record in clear.">
          <input id="win-admin-password" type="password" autoComplete="new-password" value={win.adminPassword}
                 aria-invalid={invalid("adminPassword")} onChange={(e) => set({ adminPassword: e.target.value })} />
        </Field>
        <Field label="Time zone" htmlFor="win-timezone" error={errors["win.timezone"]} hint="A Windows time zone id.">
          <input id="win-timezone" list="win-timezones" value={win.timezone} autoComplete="off" spellCheck={false}
                 aria-invalid={invalid("timezone")} onChange={(e) => set({ timezone: e.target.value })} />
        </Field>
        <Field label="Locale" htmlFor="win-locale" error={errors["win.locale"]} hint="System, user and UI language.">
          <input id="win-locale" list="win-locales" value={win.locale} autoComplete="off" spellCheck={false}
                 aria-invalid={invalid("locale")} onChange={(e) => set({ locale: e.target.value.trim() })} />
        </Field>
        <Field label="Keyboard (optional)" htmlFor="win-keyboard" error={errors["win.keyboard"]} hint="Default: the locale's.">
          <input id="win-keyboard" value={win.keyboard} autoComplete="off" spellCheck={false}
                 aria-invalid={invalid("keyboard")} onChange={(e) => set({ keyboard: e.target.value })} />
        </Field>
        <Field label="Product key (optional)" htmlFor="win-product-key" error={errors["win.productKey"]}
               hint="XXXXX-XXXXX-XXXXX-XXXXX-XXXXX">
          <input id="win-product-key" value={win.productKey} autoComplete="off" spellCheck={false}
                 aria-invalid={invalid("productKey")} onChange={(e) => set({ productKey: e.target.value.trim().toUpperCase() })} />
        </Field>
        <Field label="Windows version" htmlFor="win-version" error={errors["win.version"]}
               hint="Picks the virtio-win driver folder (when the library has a virtio-win ISO).">
          <select id="win-version" value={win.version} onChange={(e) => set({ version: e.target.value })}>
            {WINDOWS_VERSIONS.map((v) => <option key={v.value} value={v.value}>{v.label}</option>)}
          </select>
        </Field>
      </div>
      <datalist id="win-timezones">{TIMEZONES.map((t) => <option key={t} value={t} />)}</datalist>
      <datalist id="win-locales">{LOCALES.map((l) => <option key={l} value={l} />)}</datalist>
      <div className="checks">
        <label className="check">
          <input type="checkbox" id="win-rdp" checked={win.enableRdp} onChange={(e) => set({ enableRdp: e.target.checked })} />
          Enable Remote Desktop (RDP; forwarded on 127.0.0.1 like SSH with user networking)
        </label>
        <label className="check">
          <input type="checkbox" id="win-winrm" checked={win.enableWinrm} onChange={(e) => set({ enableWinrm: e.target.checked })} />
          Enable WinRM (HTTP 5985)
        </label>
        <label className="check">
          <input type="checkbox" id="win-secure-boot" checked={win.secureBoot} onChange={(e) => set({ secureBoot: e.target.checked })} />
          UEFI Secure Boot (Microsoft's keys enrolled)
        </label>
      </div>
      <Field label="First-logon commands (optional)" htmlFor="win-first-logon" error={errors["win.firstLogon"]}
             hint="One command a line, run in order at the first sign-in (at most 32).">
        <textarea id="win-first-logon" rows={3} value={win.firstLogon} spellCheck={false}
                  aria-invalid={invalid("firstLogon")} placeholder="powershell -Command Set-ExecutionPolicy RemoteSigned"
                  onChange={(e) => set({ firstLogon: e.target.value })} />
      </Field>
      <details className="advanced" open={win.join}>
        <summary>Join an Active Directory domain</summary>
        <label className="check">
          <input type="checkbox" id="win-join" checked={win.join} onChange={(e) => set({ join: e.target.checked })} />
          Join a domain at setup (specialize pass)
        </label>
        {win.join && (
          <>
            <div className="grid-fields">
              <Field label="Domain" htmlFor="win-join-domain" error={errors["win.joinDomain"]} hint="Its DNS name, e.g. corp.example.com.">
                <input id="win-join-domain" value={win.joinDomain} autoComplete="off" spellCheck={false}
                       aria-invalid={invalid("joinDomain")} onChange={(e) => set({ joinDomain: e.target.value.trim() })} />
              </Field>
              <Field label="Join account" htmlFor="win-join-user" error={errors["win.joinUser"]} hint="user, DOMAIN\user or user@domain">
                <input id="win-join-user" value={win.joinUser} autoComplete="off" spellCheck={false}
                       aria-invalid={invalid("joinUser")} onChange={(e) => set({ joinUser: e.target.value.trim() })} />
              </Field>
              <Field label="Join password" htmlFor="win-join-password" error={errors["win.joinPassword"]}>
                <input id="win-join-password" type="password" autoComplete="new-password" value={win.joinPassword}
                       aria-invalid={invalid("joinPassword")} onChange={(e) => set({ joinPassword: e.target.value })} />
              </Field>
              <Field label="OU (optional)" htmlFor="win-join-ou" error={errors["win.joinOu"]} hint="Default: the domain's Computers container.">
                <input id="win-join-ou" value={win.joinOu} autoComplete="off" spellCheck={false} placeholder="OU=Servers,DC=corp,DC=example,DC=com"
                       aria-invalid={invalid("joinOu")} onChange={(e) => set({ joinOu: e.target.value.trim() })} />
              </Field>
            </div>
            <p className="warning">Windows needs the join password in plain text in the answer file on the seed media: use an
              account that may only join computers.</p>
          </>
        )}
      </details>
      {windowsWarnings(win).map((warning) => <p key={warning} className="warning" role="status">{warning}</p>)}
    </div>
  );
}
