// The wizard's steps, one component each, all editing the same draft.
import type { ImageRecord, NetworkMode } from "../../api/types";
import { CodeEditor, type LineError } from "../../components/CodeEditor";
import { Field, UsageBar } from "../../components/bits";
import { bytes, mib } from "../../lib/format";
import { Link } from "../../lib/router";
import { sshKeyLabel, sshKeyProblem } from "../../lib/sshKey";
import {
  type BootMedia, cloudInitWarnings, type Datasource, type Draft, type Errors, imagesFor, memoryMib, minimumDiskGib,
  usesCloudInit, usesWindowsSetup, type WizardContext,
} from "../../lib/wizard";
import { type OsType, osTypeOf, raiseToMinimums, versionOf, WINDOWS_MIN_TEXT } from "../../lib/windows";
import { useState } from "react";
import { WindowsSetup } from "./WindowsSetup";

export interface StepProps {
  draft: Draft;
  update: (patch: Partial<Draft>) => void;
  errors: Errors;
  ctx: WizardContext;
}

function describedBy(id: string, error?: string): string | undefined {
  return error ? `${id}-error` : `${id}-hint`;
}

export function BasicsStep({ draft, update, errors }: StepProps) {
  return (
    <fieldset className="step-body">
      <legend className="visually-hidden">Basics</legend>
      <Field label="Name" htmlFor="vm-name" error={errors.name}
             hint="Lower-case letters, digits and '-' (a DNS label); unique in the cluster.">
        <input id="vm-name" value={draft.name} autoComplete="off" spellCheck={false} maxLength={63}
               aria-invalid={errors.name ? true : undefined} aria-describedby={describedBy("vm-name", errors.name)}
               onChange={(e) => update({ name: e.target.value.trim() })} />
      </Field>
      <Field label="Description (optional)" htmlFor="vm-description" error={errors.description}
             hint="What the VM is for; shown on its page.">
        <textarea id="vm-description" value={draft.description} rows={2} maxLength={1024}
                  aria-describedby={describedBy("vm-description", errors.description)}
                  onChange={(e) => update({ description: e.target.value })} />
      </Field>
      <Field label="Labels (optional)" htmlFor="vm-labels" error={errors.labels}
             hint="key=value words to find the VM by (e.g. team=web tier=db); the VM list filters by them.">
        <input id="vm-labels" value={draft.labels} autoComplete="off" spellCheck={false}
               aria-invalid={errors.labels ? true : undefined} aria-describedby={describedBy("vm-labels", errors.labels)}
               onChange={(e) => update({ labels: e.target.value })} />
      </Field>
    </fieldset>
  );
}

export function PlacementStep({ draft, update, errors, ctx }: StepProps) {
  return (
    <fieldset className="step-body">
      <legend>Where the VM runs</legend>
      <div className="choice-list" role="radiogroup" aria-label="Placement">
        <label className={`choice${draft.node === "" ? " selected" : ""}`}>
          <input type="radio" name="placement" value="" checked={draft.node === ""} onChange={() => update({ node: "" })} />
          <span className="choice-title">Automatic</span>
          <span className="choice-text">The live node with the most free memory that also has the vCPUs.</span>
        </label>
        {ctx.nodes.map((node) => {
          const cpuTotal = node.vcpus_capacity ?? node.vcpus ?? 0;
          const memTotal = node.memory_mib_capacity ?? node.memory_mib ?? 0;
          const offline = node.status !== "online";
          return (
            <label key={node.id} className={`choice${draft.node === node.id ? " selected" : ""}${offline ? " disabled" : ""}`}>
              <input type="radio" name="placement" value={node.id} checked={draft.node === node.id} disabled={offline}
                     aria-label={`Node ${node.id}`} onChange={() => update({ node: node.id })} />
              <span className="choice-title">{node.id} <span className={`badge node-${node.status}`}>{node.status}</span></span>
              <UsageBar label="vCPUs allocated" used={node.allocated_vcpus ?? 0} total={cpuTotal}
                        detail={`${node.free_vcpus ?? 0} of ${cpuTotal} free`} />
              <UsageBar label="Memory allocated" used={node.allocated_memory_mib ?? 0} total={memTotal}
                        detail={`${mib(node.free_memory_mib ?? 0)} of ${mib(memTotal)} free`} />
            </label>
          );
        })}
      </div>
      {errors.node && <p className="field-error" role="alert">{errors.node}</p>}
    </fieldset>
  );
}

export function HardwareStep({ draft, update, errors, ctx }: StepProps) {
  const minimum = minimumDiskGib(draft, ctx);
  return (
    <fieldset className="step-body grid-fields">
      <legend className="visually-hidden">Hardware</legend>
      <Field label="vCPUs" htmlFor="vm-vcpus" error={errors.vcpus}>
        <input id="vm-vcpus" type="number" inputMode="numeric" min={1} max={256} value={draft.vcpus}
               aria-invalid={errors.vcpus ? true : undefined} onChange={(e) => update({ vcpus: e.target.value })} />
      </Field>
      <Field label="Memory" htmlFor="vm-memory" error={errors.memory}>
        <div className="with-unit">
          <input id="vm-memory" type="number" inputMode="decimal" min={0} step="any" value={draft.memory}
                 aria-invalid={errors.memory ? true : undefined} onChange={(e) => update({ memory: e.target.value })} />
          <select aria-label="Memory unit" value={draft.memoryUnit}
                  onChange={(e) => update({ memoryUnit: e.target.value as Draft["memoryUnit"] })}>
            <option value="MiB">MiB</option>
            <option value="GiB">GiB</option>
          </select>
        </div>
      </Field>
      <Field label="Disk (GiB)" htmlFor="vm-disk" error={errors.diskGib}
             hint={minimum ? `${draft.osType === "windows" && !selectedImageMinimum(draft, ctx) ? "Windows" : "The chosen image"} needs at least ${minimum} GiB.` : "The VM's system disk; a cloud image is grown to it."}>
        <input id="vm-disk" type="number" inputMode="numeric" min={Math.max(1, minimum)} value={draft.diskGib}
               aria-invalid={errors.diskGib ? true : undefined} onChange={(e) => update({ diskGib: e.target.value })} />
      </Field>
      {draft.osType === "windows" && <p className="note windows-minimums">{WINDOWS_MIN_TEXT}</p>}
    </fieldset>
  );
}

/** The chosen image's own disk minimum (not Windows'): says whose minimum the hint names. */
function selectedImageMinimum(draft: Draft, ctx: StepProps["ctx"]): number {
  return minimumDiskGib({ ...draft, osType: "linux" }, ctx);
}

const OS_CARDS: { value: OsType; title: string; text: string }[] = [
  { value: "linux", title: "Linux", text: "cloud-init sets the user, SSH keys and your config at first boot." },
  { value: "windows", title: "Windows", text: "UEFI, TPM 2.0 and Hyper-V; unattended setup (computer name, administrator, RDP/WinRM)." },
];

const BOOT_CARDS: { value: BootMedia; title: string; text: string; badge?: string }[] = [
  { value: "cloud", title: "Cloud Image", text: "Automated with cloud-init: users, SSH keys and your config applied at first boot.", badge: "Recommended" },
  { value: "iso", title: "ISO Image", text: "Boot an installer ISO and install by hand on the console (the ISO boots before a blank disk)." },
  { value: "none", title: "None", text: "A blank disk and no seed: configure it later (e.g. network boot or an ISO later)." },
];

function imageSize(image: ImageRecord): string {
  const size = image.virtual_size ?? image.file_size ?? image.bytes_total;
  return size ? bytes(size) : "size unknown";
}

function downloaded(image: ImageRecord): string {
  if (image.state === "active") return "downloaded";
  if (image.state === "remote" || image.state === "available") return "downloads on create";
  return image.state ?? "";
}

export function BootStep({ draft, update, errors, ctx }: StepProps) {
  const list = imagesFor(draft.boot, ctx.images.values());
  const [raised, setRaised] = useState<string[]>([]);
  // Windows' minimums are enforced: the hardware is raised to them when Windows is chosen
  // (and said so), rather than refused on create.
  const withOs = (osType: OsType, patch: Partial<Draft>, image?: ImageRecord): Partial<Draft> => {
    if (osType !== "windows") {
      setRaised([]);
      return { ...patch, osType };
    }
    const merged = { ...draft, ...patch };
    const raise = raiseToMinimums({ vcpus: merged.vcpus, memoryMib: memoryMib(merged), diskGib: merged.diskGib });
    setRaised(raise.raised);
    const win = image ? { ...draft.win, version: versionOf(image) } : draft.win;
    return { ...patch, ...raise.patch, osType, win };
  };
  const pick = (image: ImageRecord) => {
    const patch: Partial<Draft> = { imageId: image.id };
    const minimum = minimumDiskGib({ ...draft, imageId: image.id }, ctx);
    // The image's minimum disk is enforced: raise the disk rather than fail on create.
    if (Number(draft.diskGib) < minimum) patch.diskGib = String(minimum);
    if (image.default_user && draft.user === "admin") patch.user = image.default_user;
    // The OS family follows the image's `os` (as the gateway would); an image that does not
    // say keeps the family chosen.
    update(image.os ? withOs(osTypeOf(image), patch, image) : patch);
  };
  return (
    <fieldset className="step-body">
      <legend className="visually-hidden">Boot media</legend>
      <div className="boot-cards" role="radiogroup" aria-label="Boot media">
        {BOOT_CARDS.map((card) => (
          <label key={card.value} className={`choice boot-card${draft.boot === card.value ? " selected" : ""}`}
                 data-boot={card.value}>
            <input type="radio" name="boot" value={card.value} checked={draft.boot === card.value}
                   onChange={() => update({ boot: card.value, imageId: "" })} />
            <span className="choice-title">{card.title}{card.badge && <span className="badge recommended">{card.badge}</span>}</span>
            <span className="choice-text">{card.text}</span>
          </label>
        ))}
      </div>
      {draft.boot !== "none" && (
        <div className="image-pick">
          <h3>{draft.boot === "iso" ? "ISO images" : "Cloud images"}</h3>
          {list.length === 0 ? (
            <p className="empty">No {draft.boot === "iso" ? "ISO" : "cloud"} images yet: <Link href="/images">upload or import one</Link>.</p>
          ) : (
            <div className="choice-list" role="radiogroup" aria-label={draft.boot === "iso" ? "ISO image" : "Cloud image"}>
              {list.map((image) => (
                <label key={image.id} className={`choice image-choice${draft.imageId === image.id ? " selected" : ""}`}>
                  <input type="radio" name="image" value={image.id} checked={draft.imageId === image.id}
                         aria-label={image.name} onChange={() => pick(image)} />
                  <span className="choice-title">{image.name}</span>
                  <span className="choice-text">
                    {[image.os, image.version].filter(Boolean).join(" ") || image.format || "image"} · {imageSize(image)}
                    {image.min_disk_gib ? ` · min disk ${image.min_disk_gib} GiB` : ""} · <span className={`badge image-${image.state}`}>{downloaded(image)}</span>
                  </span>
                </label>
              ))}
            </div>
          )}
        </div>
      )}
      {errors.image && <p className="field-error" role="alert" id="image-error">{errors.image}</p>}
      <h3 id="os-family-label">OS family</h3>
      <div className="boot-cards os-cards" role="radiogroup" aria-labelledby="os-family-label">
        {OS_CARDS.map((card) => (
          <label key={card.value} className={`choice${draft.osType === card.value ? " selected" : ""}`} data-os={card.value}>
            <input type="radio" name="os-type" value={card.value} checked={draft.osType === card.value}
                   onChange={() => update(withOs(card.value, {}, ctx.images.get(draft.imageId)))} />
            <span className="choice-title">{card.title}</span>
            <span className="choice-text">{card.text}</span>
          </label>
        ))}
      </div>
      {draft.osType === "windows" && (
        <div className="note windows-minimums" role="status">
          <p>{WINDOWS_MIN_TEXT}</p>
          {raised.length > 0 && <p>Raised to: {raised.join(", ")}.</p>}
          {draft.boot === "none" && <p>With no boot media there is no seed: install Windows later from an ISO on the console.</p>}
        </div>
      )}
    </fieldset>
  );
}

const NETWORK_MODES: { value: NetworkMode; label: string }[] = [
  { value: "user", label: "User (NAT, SSH forwarded on 127.0.0.1)" },
  { value: "isolated", label: "Isolated (only the forwards reach the guest)" },
  { value: "bridge", label: "Bridge (an existing host bridge)" },
  { value: "network", label: "libvirt network" },
  { value: "none", label: "No network" },
];

const SEED_FORMATS: { value: Datasource; label: string }[] = [
  { value: "nocloud", label: "NoCloud (ISO labelled cidata)" },
  { value: "configdrive", label: "Config drive (OpenStack config-2)" },
];

export function SeedFormatField({ draft, update, windows }: Pick<StepProps, "draft" | "update"> & { windows: boolean }) {
  return (
    <Field label="Seed format" htmlFor="ci-datasource"
           hint={windows ? "cloudbase-init in a Windows image reads a config drive." : "NoCloud suits most cloud images; some read only a config drive."}>
      <select id="ci-datasource" value={draft.datasource} onChange={(e) => update({ datasource: e.target.value as Datasource })}>
        {SEED_FORMATS.map((f) => <option key={f.value} value={f.value}>{f.label}</option>)}
      </select>
    </Field>
  );
}

export function CloudInitStep({ draft, update, errors, configError }: StepProps & { configError: LineError | null }) {
  const [newKey, setNewKey] = useState("");
  const [keyError, setKeyError] = useState("");
  const warnings = cloudInitWarnings(draft);
  const addKey = () => {
    const key = newKey.trim();
    const problem = sshKeyProblem(key);
    if (problem) {
      setKeyError(problem);
      return;
    }
    if (draft.sshKeys.some((k) => k.trim() === key)) {
      setKeyError("this key is in the list already");
      return;
    }
    update({ sshKeys: [...draft.sshKeys, key] });
    setNewKey("");
    setKeyError("");
  };
  const cloud = usesCloudInit(draft);
  const windows = usesWindowsSetup(draft);
  return (
    <fieldset className="step-body">
      <legend className="visually-hidden">{windows ? "Windows setup and network" : cloud ? "Cloud-init and network" : "Network"}</legend>
      {!cloud && !windows && <p className="note">Cloud-init is not used with {draft.boot === "iso" ? "an ISO image" : "no boot media"}: only the network is set here.</p>}
      {windows && <WindowsSetup draft={draft} update={update} errors={errors} />}
      {windows && draft.boot === "cloud" && <SeedFormatField draft={draft} update={update} windows />}
      {cloud && (
        <>
          <Field label="Default user" htmlFor="ci-user" error={errors.user}>
            <input id="ci-user" value={draft.user} autoComplete="off" spellCheck={false}
                   aria-invalid={errors.user ? true : undefined} onChange={(e) => update({ user: e.target.value })} />
          </Field>
          <div className="field">
            <span className="label" id="keys-label">SSH public keys ({draft.sshKeys.length})</span>
            <ul className="key-list" aria-labelledby="keys-label">
              {draft.sshKeys.map((key, index) => (
                <li key={`${index}-${key}`} className={errors[`sshKey${index}`] ? "invalid" : ""}>
                  <code className="key-text">{sshKeyLabel(key)}</code>
                  <button type="button" className="small" aria-label={`Remove SSH key ${index + 1}`}
                          onClick={() => update({ sshKeys: draft.sshKeys.filter((_, i) => i !== index) })}>Remove</button>
                  {errors[`sshKey${index}`] && <p className="field-error" role="alert">Key {index + 1}: {errors[`sshKey${index}`]}</p>}
                </li>
              ))}
            </ul>
            <label htmlFor="ci-new-key">Add a public key</label>
            <textarea id="ci-new-key" className="key-input" rows={2} value={newKey} spellCheck={false}
                      placeholder="ssh-ed25519 AAAA… you@laptop (the content of ~/.ssh/id_ed25519.pub)"
                      aria-invalid={keyError ? true : undefined} aria-describedby="ci-new-key-error"
                      onChange={(e) => { setNewKey(e.target.value); setKeyError(""); }} />
            <p className="field-error" id="ci-new-key-error" role="alert">{keyError}</p>
            <div><button type="button" id="add-key" onClick={addKey}>Add key</button></div>
          </div>
          <div className="grid-fields">
            <Field label="Password (optional)" htmlFor="ci-password" error={errors.password}
                   hint="Sent once, stored only as a SHA-512 crypt hash.">
              <input id="ci-password" type="password" autoComplete="new-password" value={draft.password}
                     onChange={(e) => update({ password: e.target.value })} />
            </Field>
            <Field label="Hostname (optional)" htmlFor="ci-hostname" error={errors.hostname} hint="Default: the VM name.">
              <input id="ci-hostname" value={draft.hostname} autoComplete="off" spellCheck={false}
                     aria-invalid={errors.hostname ? true : undefined} onChange={(e) => update({ hostname: e.target.value.trim() })} />
            </Field>
          </div>
          {draft.password && (
            <label className="check">
              <input type="checkbox" checked={draft.sshPwauth} onChange={(e) => update({ sshPwauth: e.target.checked })} />
              Allow SSH logins with the password
            </label>
          )}
          {warnings.map((warning) => <p key={warning} className="warning" role="status">{warning}</p>)}
          <SeedFormatField draft={draft} update={update} windows={false} />
          <label className="check">
            <input type="checkbox" id="ci-guest-agent" checked={draft.guestAgent} onChange={(e) => update({ guestAgent: e.target.checked })} />
            Install the QEMU guest agent at first boot when the image lacks it (needs the guest's package mirror; the VM page
            then shows its OS, file systems and runs commands)
          </label>
        </>
      )}
      <div className="grid-fields">
        <Field label="Network" htmlFor="net-mode">
          <select id="net-mode" value={draft.networkMode} onChange={(e) => update({ networkMode: e.target.value as NetworkMode })}>
            {NETWORK_MODES.map((m) => <option key={m.value} value={m.value}>{m.label}</option>)}
          </select>
        </Field>
        {(draft.networkMode === "bridge" || draft.networkMode === "network") && (
          <Field label={draft.networkMode === "bridge" ? "Bridge" : "libvirt network"} htmlFor="net-source" error={errors.networkSource}>
            <input id="net-source" value={draft.networkSource} onChange={(e) => update({ networkSource: e.target.value })} />
          </Field>
        )}
      </div>
      {cloud && (
        <details className="advanced" open={draft.customConfig || Boolean(configError)}>
          <summary>Advanced: custom cloud-config</summary>
          <label className="check">
            <input type="checkbox" id="ci-custom" checked={draft.customConfig}
                   onChange={(e) => update({ customConfig: e.target.checked })} />
            Add my own cloud-config (merged with the generated user, keys and password)
          </label>
          {draft.customConfig && (
            <CodeEditor id="ci-user-data" label="Custom cloud-config (YAML)" value={draft.userData}
                        onChange={(userData) => update({ userData })}
                        error={configError ?? (errors.userData ? { line: 0, column: null, message: errors.userData } : null)} />
          )}
        </details>
      )}
    </fieldset>
  );
}
