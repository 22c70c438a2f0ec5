// The Create VM wizard's model: the draft, per-step validation, the request body and the
// equivalent `lq` command and curl call. Pure functions (component tests exercise them).
import type { CreateVmRequest, ImageRecord, NetworkMode, NodeInfo } from "../api/types";
import { sshKeyProblem } from "./sshKey";
import { labelsText, parseLabels } from "./vmList";
import {
  NEW_WINDOWS, type OsType, osTypeOf, validateWindows, WINDOWS_MIN, windowsArgs, windowsReviewRows, windowsSection,
  type WindowsDraft,
} from "./windows";

export type BootMedia = "cloud" | "iso" | "none";
export type MemoryUnit = "MiB" | "GiB";
export type Datasource = "nocloud" | "configdrive";

export const STEPS = ["basics", "placement", "hardware", "boot", "cloud-init", "review"] as const;
export type Step = (typeof STEPS)[number];

export const STEP_TITLES: Record<Step, string> = {
  basics: "Basics",
  placement: "Placement",
  hardware: "Hardware",
  boot: "Boot media",
  "cloud-init": "Cloud-init",
  review: "Review",
};

export interface Draft {
  name: string;
  description: string;
  labels: string; // "team=web, tier=db"
  node: string; // "" = automatic placement
  vcpus: string;
  memory: string;
  memoryUnit: MemoryUnit;
  diskGib: string;
  boot: BootMedia;
  imageId: string;
  user: string;
  sshKeys: string[];
  password: string;
  sshPwauth: boolean;
  hostname: string;
  networkMode: NetworkMode;
  networkSource: string;
  customConfig: boolean;
  userData: string;
  datasource: Datasource;
  guestAgent: boolean; // install qemu-guest-agent at first boot when the image lacks it
  osType: OsType;
  win: WindowsDraft;
}

export const NEW_DRAFT: Draft = {
  name: "",
  description: "",
  labels: "",
  node: "",
  vcpus: "1",
  memory: "1",
  memoryUnit: "GiB",
  diskGib: "10",
  boot: "cloud",
  imageId: "",
  user: "admin",
  sshKeys: [],
  password: "",
  sshPwauth: false,
  hostname: "",
  networkMode: "user",
  networkSource: "",
  customConfig: false,
  userData: "#cloud-config\npackages:\n  - htop\n",
  datasource: "nocloud",
  guestAgent: true,
  osType: "linux",
  win: NEW_WINDOWS,
};

export interface WizardContext {
  takenNames: ReadonlySet<string>;
  images: ReadonlyMap<string, ImageRecord>;
  nodes: readonly NodeInfo[];
}

export type Errors = Partial<Record<string, string>>;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const MAX_PASSWORD = 1024;

/** A whole number within bounds, else null. */
function wholeNumber(text: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const value = Number(text.trim());
  return value >= min && value <= max ? value : null;
}

export function memoryMib(draft: Pick<Draft, "memory" | "memoryUnit">): number | null {
  const text = draft.memory.trim();
  if (!/^\d+(\.\d+)?$/.test(text)) return null;
  const value = Number(text) * (draft.memoryUnit === "GiB" ? 1024 : 1);
  return Number.isInteger(value) ? value : null;
}

/** Linux from a cloud image: the one case where the wizard writes the cloud-init user and keys. */
export function usesCloudInit(draft: Pick<Draft, "boot" | "osType">): boolean {
  return draft.boot === "cloud" && draft.osType === "linux";
}

/** A Windows VM booting media gets an answer file (with no boot media there is no seed). */
export function usesWindowsSetup(draft: Pick<Draft, "boot" | "osType">): boolean {
  return draft.osType === "windows" && draft.boot !== "none";
}

export function isCloudImage(image: ImageRecord): boolean {
  return image.format !== "iso";
}

/** Images offered on a boot media card: usable (or downloadable) ones of that kind. */
export function imagesFor(boot: BootMedia, images: Iterable<ImageRecord>): ImageRecord[] {
  if (boot === "none") return [];
  const wanted = (image: ImageRecord) => (boot === "iso" ? image.format === "iso" : isCloudImage(image));
  return [...images]
    .filter((image) => wanted(image) && image.state !== "error" && image.state !== "deleting")
    // Downloaded images first: they start at once.
    .sort((a, b) => Number(b.state === "active") - Number(a.state === "active") || a.name.localeCompare(b.name));
}

export function selectedImage(draft: Draft, ctx: WizardContext): ImageRecord | undefined {
  return draft.boot === "none" ? undefined : ctx.images.get(draft.imageId);
}

/** The disk size the chosen image needs at least (0: no minimum known). */
export function minimumDiskGib(draft: Draft, ctx: WizardContext): number {
  const windows = draft.osType === "windows" ? WINDOWS_MIN.diskGib : 0;
  const image = selectedImage(draft, ctx);
  if (!image) return windows;
  const fromVirtual = image.virtual_size ? Math.ceil(image.virtual_size / 2 ** 30) : 0;
  return Math.max(windows, image.min_disk_gib ?? 0, image.format === "iso" ? 0 : fromVirtual);
}

export function validateBasics(draft: Draft, ctx: WizardContext): Errors {
  const name = draft.name;
  if (!name) return { name: "Give the VM a name." };
  if (name.length > 63) return { name: "At most 63 characters." };
  if (!DNS_LABEL.test(name)) {
    return { name: "Lower-case letters, digits and '-' only, starting and ending with a letter or digit." };
  }
  if (ctx.takenNames.has(name)) return { name: `A VM named '${name}' exists already.` };
  const labels = parseLabels(draft.labels).error;
  return labels ? { labels } : {};
}

export function validatePlacement(draft: Draft, ctx: WizardContext): Errors {
  if (!draft.node) {
    return ctx.nodes.some((n) => n.status === "online") ? {} : { node: "No node is online to place the VM on." };
  }
  const node = ctx.nodes.find((n) => n.id === draft.node);
  if (!node) return { node: `Node '${draft.node}' is not known (any more).` };
  if (node.status !== "online") return { node: `Node '${node.id}' is offline.` };
  return {};
}

export function validateHardware(draft: Draft, ctx: WizardContext): Errors {
  const errors: Errors = {};
  const vcpus = wholeNumber(draft.vcpus, 1, 256);
  if (vcpus === null) errors.vcpus = "A whole number of vCPUs from 1 to 256.";
  const memory = memoryMib(draft);
  if (memory === null || memory < 64 || memory > 4 * 1024 * 1024) {
    errors.memory = "Memory from 64 MiB to 4 TiB, in whole MiB.";
  }
  const disk = wholeNumber(draft.diskGib, 1, 64 * 1024);
  const minimum = minimumDiskGib(draft, ctx);
  const windows = draft.osType === "windows";
  if (disk === null) errors.diskGib = "A whole number of GiB from 1 to 65536.";
  else if (disk < minimum) {
    errors.diskGib = windows && minimum === WINDOWS_MIN.diskGib
      ? `Windows needs a disk of at least ${minimum} GiB.` : `The image needs a disk of at least ${minimum} GiB.`;
  }
  if (windows && vcpus !== null && vcpus < WINDOWS_MIN.vcpus) errors.vcpus = `Windows needs at least ${WINDOWS_MIN.vcpus} vCPUs.`;
  if (windows && memory !== null && memory < WINDOWS_MIN.memoryMib && !errors.memory) {
    errors.memory = `Windows needs at least ${WINDOWS_MIN.memoryMib / 1024} GiB of memory.`;
  }
  const node = ctx.nodes.find((n) => n.id === draft.node);
  if (node && vcpus !== null && memory !== null) {
    if (vcpus > (node.free_vcpus ?? 0)) {
      errors.vcpus ??= `Node '${node.id}' has ${node.free_vcpus ?? 0} vCPUs free.`;
    }
    if (memory > (node.free_memory_mib ?? 0)) {
      errors.memory ??= `Node '${node.id}' has ${node.free_memory_mib ?? 0} MiB free.`;
    }
  }
  return errors;
}

export function validateBoot(draft: Draft, ctx: WizardContext): Errors {
  if (draft.boot === "none") return {};
  const image = selectedImage(draft, ctx);
  const kind = draft.boot === "iso" ? "an ISO image" : "a cloud image";
  if (!draft.imageId || !image) return { image: `Choose ${kind}.` };
  if (draft.boot === "iso" ? image.format !== "iso" : !isCloudImage(image)) return { image: `Choose ${kind}.` };
  if (image.state === "error" || image.state === "deleting") {
    return { image: `Image '${image.name}' is ${image.state}; choose another.` };
  }
  const disk = wholeNumber(draft.diskGib, 1, 64 * 1024);
  const minimum = minimumDiskGib(draft, ctx);
  if (disk !== null && disk < minimum) {
    return { image: `'${image.name}' needs a disk of at least ${minimum} GiB; the VM has ${disk} GiB.` };
  }
  return {};
}

/** The step after Boot media: cloud-init for Linux, the unattended setup for Windows. */
export function setupStepTitle(draft: Pick<Draft, "boot" | "osType">): string {
  if (usesWindowsSetup(draft)) return "Windows setup";
  return usesCloudInit(draft) ? "Cloud-init" : "Network";
}

export function validateCloudInit(draft: Draft): Errors {
  const errors: Errors = {};
  if (draft.networkMode === "bridge" || draft.networkMode === "network") {
    if (!draft.networkSource.trim()) {
      errors.networkSource = draft.networkMode === "bridge" ? "Name the host bridge, e.g. br0." : "Name the libvirt network.";
    }
  }
  if (usesWindowsSetup(draft)) return { ...errors, ...validateWindows(draft.win, draft.name) };
  if (!usesCloudInit(draft)) return errors;
  if (!USER_NAME.test(draft.user)) errors.user = "A Linux user name: a-z, 0-9, '_' or '-', at most 32 characters.";
  const seen = new Set<string>();
  draft.sshKeys.forEach((key, index) => {
    const problem = sshKeyProblem(key);
    if (problem) errors[`sshKey${index}`] = problem;
    else if (seen.has(key.trim())) errors[`sshKey${index}`] = "this key is in the list already";
    seen.add(key.trim());
  });
  if (draft.password.length > MAX_PASSWORD) errors.password = "At most 1024 characters.";
  if (draft.hostname && !DNS_LABEL.test(draft.hostname)) {
    errors.hostname = "A host name: lower-case letters, digits and '-', at most 63 characters.";
  }
  if (draft.customConfig && !draft.userData.trim()) {
    errors.userData = "Write the custom cloud-config, or turn the advanced option off.";
  }
  return errors;
}

/** Warnings do not block: the VM is created, but the user should know. */
export function cloudInitWarnings(draft: Draft): string[] {
  if (!usesCloudInit(draft)) return [];
  const warnings: string[] = [];
  if (draft.sshKeys.length === 0 && !draft.password) {
    warnings.push("No SSH key and no password: nobody will be able to log in (except through a custom cloud-config).");
  }
  if (draft.password && draft.sshPwauth) warnings.push("SSH password logins are on: prefer a key.");
  return warnings;
}

export function validateStep(step: Step, draft: Draft, ctx: WizardContext): Errors {
  switch (step) {
    case "basics": return validateBasics(draft, ctx);
    case "placement": return validatePlacement(draft, ctx);
    case "hardware": return validateHardware(draft, ctx);
    case "boot": return validateBoot(draft, ctx);
    case "cloud-init": return validateCloudInit(draft);
    case "review": return {};
  }
}

/** The first step with an error, or null when the whole draft is valid. */
export function firstInvalidStep(draft: Draft, ctx: WizardContext): Step | null {
  for (const step of STEPS) {
    if (Object.keys(validateStep(step, draft, ctx)).length) return step;
  }
  return null;
}

/** Linux chosen for an image whose `os` says Windows: os_type must say so (the gateway would
 * otherwise take the image's word). */
function linuxOverride(draft: Draft, ctx?: WizardContext): boolean {
  return draft.osType === "linux" && ctx !== undefined && osTypeOf(selectedImage(draft, ctx)) === "windows";
}

/** The body of POST /v1/vms for the draft (os_type for Windows, or Linux over a Windows image). */
export function requestBody(draft: Draft, ctx?: WizardContext): CreateVmRequest {
  const body: CreateVmRequest = {
    name: draft.name,
    // Boot media "None": no image (a blank disk, no seed ISO).
    image: (draft.boot === "none" ? null : draft.imageId) as CreateVmRequest["image"],
    vcpus: Number(draft.vcpus),
    memory_mib: memoryMib(draft) ?? 0,
    disk_gib: Number(draft.diskGib),
    network: { mode: draft.networkMode, ...(draft.networkSource && (draft.networkMode === "bridge" || draft.networkMode === "network") ? { source: draft.networkSource.trim() } : {}) },
  };
  if (draft.node) body.node = draft.node;
  if (draft.description.trim()) body.description = draft.description.trim();
  const labels = parseLabels(draft.labels).labels;
  if (Object.keys(labels).length) body.labels = labels;
  if (usesCloudInit(draft)) {
    body.cloud_init = {
      user: draft.user,
      ssh_authorized_keys: draft.sshKeys.map((k) => k.trim()),
      ...(draft.password ? { password: draft.password, ssh_pwauth: draft.sshPwauth } : {}),
      ...(draft.hostname ? { hostname: draft.hostname } : {}),
      ...(draft.customConfig ? { user_data: draft.userData } : {}),
      ...(draft.datasource !== "nocloud" ? { datasource: draft.datasource } : {}),
      ...(draft.guestAgent ? {} : { guest_agent: false }),
    };
  } else if (draft.boot === "cloud" && draft.datasource !== "nocloud") {
    // A Windows image with cloudbase-init reads the config drive.
    body.cloud_init = { datasource: draft.datasource };
  }
  if (linuxOverride(draft, ctx)) body.os_type = "linux";
  if (draft.osType === "windows") {
    body.os_type = "windows";
    if (usesWindowsSetup(draft)) body.windows = windowsSection(draft.win, draft.name);
  }
  return body;
}

/** A shell word, single-quoted when it needs quoting. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./:=@%+-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function memoryArg(mibValue: number): string {
  return mibValue % 1024 === 0 ? `${mibValue / 1024}G` : `${mibValue}M`;
}

/** The `lq vm create` line that makes the same VM (secrets are prompted, files named). */
export function lqCommand(draft: Draft, ctx: WizardContext): string {
  const image = selectedImage(draft, ctx);
  const args = ["lq", "vm", "create", draft.name];
  if (draft.boot !== "none") args.push("--image", image?.name && uniqueName(image, ctx) ? image.name : draft.imageId);
  args.push("--cpus", String(Number(draft.vcpus)), "--memory", memoryArg(memoryMib(draft) ?? 0),
            "--disk", `${Number(draft.diskGib)}G`);
  if (usesCloudInit(draft)) {
    if (draft.user !== "admin") args.push("--user", draft.user);
    for (const key of draft.sshKeys) args.push("--ssh-key", key.trim());
    if (draft.password) args.push("--password-prompt");
    if (draft.password && draft.sshPwauth) args.push("--ssh-password-auth");
    if (draft.hostname) args.push("--hostname", draft.hostname);
    if (draft.customConfig) args.push("--user-data", "user-data.yaml");
  }
  if (draft.boot === "cloud" && draft.datasource !== "nocloud") args.push("--datasource", draft.datasource);
  if (usesWindowsSetup(draft)) args.push(...windowsArgs(windowsSection(draft.win, draft.name)));
  else if (draft.osType === "windows") args.push("--os-type", "windows");
  else if (linuxOverride(draft, ctx)) args.push("--os-type", "linux");
  const network = draft.networkMode === "bridge" || draft.networkMode === "network"
    ? `${draft.networkMode}:${draft.networkSource.trim()}` : draft.networkMode;
  args.push("--network", network);
  if (draft.node) args.push("--node", draft.node);
  if (draft.description.trim()) args.push("--description", draft.description.trim());
  for (const [key, value] of Object.entries(parseLabels(draft.labels).labels)) args.push("--label", `${key}=${value}`);
  // Only cloud-init says "ready" (a Windows guest never prints its finished line).
  args.push("--wait", usesCloudInit(draft) ? "ready" : "running");
  return args.map(shellQuote).join(" ");
}

function uniqueName(image: ImageRecord, ctx: WizardContext): boolean {
  return [...ctx.images.values()].filter((i) => i.name === image.name).length === 1;
}

/** The curl call that makes the same VM; passwords (if any) are left as placeholders. */
export function curlCommand(draft: Draft, origin: string, ctx?: WizardContext): string {
  const body = requestBody(draft, ctx);
  if (body.cloud_init?.password) body.cloud_init = { ...body.cloud_init, password: "<password>" };
  if (body.windows?.admin_password) body.windows = { ...body.windows, admin_password: "<password>" };
  if (body.windows?.domain_join) body.windows = { ...body.windows, domain_join: { ...body.windows.domain_join, password: "<password>" } };
  return [
    `curl -X POST ${shellQuote(`${origin}/v1/vms`)}`,
    `  -H "Authorization: Bearer $LQ_TOKEN"`,
    `  -H 'Content-Type: application/json'`,
    `  -H "Idempotency-Key: $(uuidgen)"`,
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

export interface ReviewRow {
  label: string;
  value: string;
}

/** Everything the Review step shows, in order. */
export function reviewRows(draft: Draft, ctx: WizardContext): ReviewRow[] {
  const image = selectedImage(draft, ctx);
  const windows = draft.osType === "windows";
  const method = {
    cloud: windows ? "Cloud image (Windows, sysprepped: unattend.xml)" : "Cloud image (automated with cloud-init)",
    iso: windows ? "ISO image (unattended Windows install: Autounattend.xml)" : "ISO image (manual install)",
    none: "None (configure later)",
  }[draft.boot];
  const rows: ReviewRow[] = [
    { label: "Name", value: draft.name },
    ...(draft.description.trim() ? [{ label: "Description", value: draft.description.trim() }] : []),
    ...(draft.labels.trim() ? [{ label: "Labels", value: labelsText(parseLabels(draft.labels).labels) }] : []),
    { label: "Placement", value: draft.node ? `node ${draft.node}` : "automatic" },
    { label: "vCPUs", value: String(Number(draft.vcpus)) },
    { label: "Memory", value: `${memoryMib(draft) ?? "?"} MiB` },
    { label: "Disk", value: `${Number(draft.diskGib)} GiB` },
    { label: "OS family", value: windows ? "Windows (UEFI, TPM 2.0, Hyper-V)" : "Linux" },
    { label: "Provisioning method", value: method },
    { label: "Image", value: draft.boot === "none" ? "none (blank disk)" : image ? imageLabel(image) : draft.imageId },
  ];
  const network = draft.networkMode === "bridge" || draft.networkMode === "network"
    ? `${draft.networkMode} ${draft.networkSource}` : draft.networkMode;
  rows.push({ label: "Network", value: network });
  if (draft.boot === "cloud") {
    rows.push({ label: "Seed format", value: draft.datasource === "configdrive" ? "config drive (config-2)" : "NoCloud (cidata)" });
  }
  if (usesWindowsSetup(draft)) {
    rows.push(...windowsReviewRows(draft.win, draft.name));
  } else if (usesCloudInit(draft)) {
    rows.push(
      { label: "User", value: draft.user },
      { label: "SSH keys", value: String(draft.sshKeys.length) },
      { label: "Password", value: draft.password ? (draft.sshPwauth ? "set (SSH password login on)" : "set") : "none" },
      { label: "Hostname", value: draft.hostname || `${draft.name} (the VM name)` },
      { label: "Custom cloud-config", value: draft.customConfig ? "yes" : "no" },
      { label: "Guest agent", value: draft.guestAgent ? "installed at first boot if the image lacks it" : "not installed" },
    );
  } else {
    rows.push({ label: "Cloud-init", value: "not used" });
  }
  return rows;
}

export function imageLabel(image: ImageRecord): string {
  const os = [image.os, image.version].filter(Boolean).join(" ");
  const plain = (text: string) => text.toLowerCase().replace(/[^a-z0-9]/g, "");
  return os && !plain(image.name).includes(plain(os)) ? `${image.name} (${os})` : image.name;
}

/** Where a custom cloud-config problem is, from the server's 422 (1-based line/column). */
export interface ConfigError {
  line: number | null;
  column: number | null;
  message: string;
}

export function configErrorOf(code: string, body: Record<string, unknown>, detail: string): ConfigError | null {
  if (code !== "invalid_user_data") return null;
  const line = typeof body.line === "number" ? body.line : null;
  const column = typeof body.column === "number" ? body.column : null;
  return { line, column, message: detail };
}
