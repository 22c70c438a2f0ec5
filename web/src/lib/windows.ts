// Windows guests in the wizard (docs/windows.md): the OS family an image implies, the minimums
// Windows Setup needs, the unattended-setup fields checked as the gateway checks them, and the
// `windows` section, lq flags and review rows they become. Pure functions.
import type { CreateVmRequest, ImageRecord } from "../api/types";

export type OsType = "linux" | "windows";
export type WindowsSection = NonNullable<CreateVmRequest["windows"]>;
export type WindowsVersion = NonNullable<WindowsSection["windows_version"]>;

/** The wizard's Windows setup fields, as typed (strings until sent). */
export interface WindowsDraft {
  computerName: string; // "" = the VM name
  adminUser: string;
  adminPassword: string;
  timezone: string;
  locale: string;
  keyboard: string;
  productKey: string;
  enableRdp: boolean;
  enableWinrm: boolean;
  firstLogon: string; // one command a line
  version: string;
  secureBoot: boolean;
  join: boolean; // join an Active Directory domain
  joinDomain: string;
  joinUser: string;
  joinPassword: string;
  joinOu: string;
}

export const NEW_WINDOWS: WindowsDraft = {
  computerName: "",
  adminUser: "admin",
  adminPassword: "",
  timezone: "UTC",
  locale: "en-US",
  keyboard: "",
  productKey: "",
  enableRdp: true,
  enableWinrm: false,
  firstLogon: "",
  version: "w11",
  secureBoot: false,
  join: false,
  joinDomain: "",
  joinUser: "",
  joinPassword: "",
  joinOu: "",
};

// Windows 11 / Server 2022 setup refuses less (the gateway answers 422 windows_too_small).
export const WINDOWS_MIN = { vcpus: 2, memoryMib: 4096, diskGib: 64 } as const;
export const WINDOWS_MIN_TEXT = "Windows needs at least 2 vCPUs, 4 GiB of memory and a 64 GiB disk (Windows Setup refuses less).";

/** The virtio-win driver folders the gateway accepts, as people name the versions. */
export const WINDOWS_VERSIONS: { value: WindowsVersion; label: string }[] = [
  { value: "w11", label: "Windows 11" },
  { value: "w10", label: "Windows 10" },
  { value: "2k25", label: "Windows Server 2025" },
  { value: "2k22", label: "Windows Server 2022" },
  { value: "2k19", label: "Windows Server 2019" },
  { value: "2k16", label: "Windows Server 2016" },
];

// Suggestions only: any Windows time zone id or locale the gateway's pattern allows is taken.
export const TIMEZONES = ["UTC", "GMT Standard Time", "W. Europe Standard Time", "Central Europe Standard Time",
  "Romance Standard Time", "E. Europe Standard Time", "Eastern Standard Time", "Central Standard Time",
  "Mountain Standard Time", "Pacific Standard Time", "India Standard Time", "China Standard Time",
  "Tokyo Standard Time", "AUS Eastern Standard Time"];
export const LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "nl-NL", "pt-BR", "pl-PL",
  "sv-SE", "ja-JP", "zh-CN"];

const ADMIN_USER = /^[A-Za-z][A-Za-z0-9_.-]{0,19}$/;
const LOCALE = /^[a-z]{2,3}-[A-Za-z]{2,4}$/;
const PRODUCT_KEY = /^([A-Z0-9]{5}-){4}[A-Z0-9]{5}$/;
const NETBIOS = /^[A-Za-z0-9-]+$/;
const DOMAIN = /^(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const OU = /^(OU|CN)=/;
const MAX_COMMANDS = 32;
const MAX_COMMAND = 1024;

/** An image's OS family, as the gateway decides it when os_type is left out. */
export function osTypeOf(image: ImageRecord | undefined): OsType {
  return image?.os?.trim().toLowerCase().startsWith("windows") ? "windows" : "linux";
}

/** The virtio-win folder an image's version suggests (Windows 11 when it says nothing known). */
export function versionOf(image: ImageRecord | undefined): WindowsVersion {
  const text = `${image?.os ?? ""} ${image?.version ?? ""} ${image?.name ?? ""}`.toLowerCase();
  for (const [pattern, version] of [[/2025/, "2k25"], [/2022/, "2k22"], [/2019/, "2k19"], [/2016/, "2k16"],
                                    [/(^|\D)10(\D|$)/, "w10"]] as const) {
    if (pattern.test(text)) return version;
  }
  return "w11";
}

/** Why a computer name breaks the NetBIOS rule (the gateway's invalid_computer_name), else "". */
export function computerNameProblem(requested: string, vmName: string): string {
  const name = requested || vmName;
  const given = requested ? "The computer name" : `The VM name '${vmName}' (the default computer name)`;
  if (name.length < 1 || name.length > 15) {
    return `${given} is ${name.length} characters; a Windows computer name has 1 to 15${requested ? "" : ": give one"}.`;
  }
  if (!NETBIOS.test(name)) return `${given} may hold only letters, digits and '-'.`;
  if (/^\d+$/.test(name)) return `${given} cannot be only digits.`;
  if (name.startsWith("-") || name.endsWith("-")) return `${given} cannot start or end with '-'.`;
  return "";
}

export function commandsOf(win: WindowsDraft): string[] {
  return win.firstLogon.split("\n").map((line) => line.trim()).filter(Boolean);
}

/** The Windows setup fields' errors, keyed like the wizard's other fields (win.<field>). */
export function validateWindows(win: WindowsDraft, vmName: string): Partial<Record<string, string>> {
  const errors: Partial<Record<string, string>> = {};
  const name = computerNameProblem(win.computerName, vmName);
  if (name) errors["win.computerName"] = name;
  if (!ADMIN_USER.test(win.adminUser)) {
    errors["win.adminUser"] = "A Windows user name: a letter, then letters, digits, '_', '.' or '-'; at most 20 characters.";
  }
  if (win.adminPassword.length > 127) errors["win.adminPassword"] = "At most 127 characters.";
  if (!win.timezone.trim() || win.timezone.length > 64) {
    errors["win.timezone"] = "A Windows time zone id, e.g. 'W. Europe Standard Time' (at most 64 characters).";
  }
  if (!LOCALE.test(win.locale)) errors["win.locale"] = "A locale like en-US or de-DE.";
  if (win.keyboard.length > 64) errors["win.keyboard"] = "At most 64 characters.";
  if (win.productKey && !PRODUCT_KEY.test(win.productKey)) {
    errors["win.productKey"] = "Five groups of five letters or digits: XXXXX-XXXXX-XXXXX-XXXXX-XXXXX.";
  }
  const commands = commandsOf(win);
  if (commands.length > MAX_COMMANDS) errors["win.firstLogon"] = `At most ${MAX_COMMANDS} commands.`;
  else {
    const long = commands.findIndex((c) => c.length > MAX_COMMAND);
    if (long >= 0) errors["win.firstLogon"] = `Command ${long + 1} is longer than ${MAX_COMMAND} characters.`;
  }
  if (!WINDOWS_VERSIONS.some((v) => v.value === win.version)) errors["win.version"] = "Choose a Windows version.";
  if (win.join) Object.assign(errors, validateJoin(win));
  return errors;
}

function validateJoin(win: WindowsDraft): Partial<Record<string, string>> {
  const errors: Partial<Record<string, string>> = {};
  if (!DOMAIN.test(win.joinDomain)) errors["win.joinDomain"] = "The domain's DNS name, e.g. corp.example.com.";
  if (!win.joinUser || win.joinUser.length > 104) {
    errors["win.joinUser"] = "An account allowed to join computers: user, DOMAIN\\user or user@domain.";
  }
  if (!win.joinPassword) errors["win.joinPassword"] = "The join account's password.";
  else if (win.joinPassword.length > 127) errors["win.joinPassword"] = "At most 127 characters.";
  if (win.joinOu && (!OU.test(win.joinOu) || win.joinOu.length > 1024)) {
    errors["win.joinOu"] = "A distinguished name starting with OU= or CN=, e.g. OU=Servers,DC=corp,DC=example,DC=com.";
  }
  return errors;
}

/** Warnings that do not block the create. */
export function windowsWarnings(win: WindowsDraft): string[] {
  const warnings: string[] = [];
  if (!win.adminPassword) {
    warnings.push(`No administrator password: no local account '${win.adminUser}' is made and nothing signs in by itself, `
      + "so first-logon commands (and WinRM) wait until someone signs in on the console.");
  }
  if (!win.enableRdp && !win.enableWinrm) warnings.push("RDP and WinRM are both off: the console is the only way in.");
  return warnings;
}

/** The hardware raised to Windows' minimums, and what was raised (for the note the user sees). */
export function raiseToMinimums(hw: { vcpus: string; memoryMib: number | null; diskGib: string }
): { patch: { vcpus?: string; memory?: string; memoryUnit?: "GiB"; diskGib?: string }; raised: string[] } {
  const patch: { vcpus?: string; memory?: string; memoryUnit?: "GiB"; diskGib?: string } = {};
  const raised: string[] = [];
  if (!(Number(hw.vcpus) >= WINDOWS_MIN.vcpus)) {
    patch.vcpus = String(WINDOWS_MIN.vcpus);
    raised.push(`${WINDOWS_MIN.vcpus} vCPUs`);
  }
  if (hw.memoryMib === null || hw.memoryMib < WINDOWS_MIN.memoryMib) {
    patch.memory = String(WINDOWS_MIN.memoryMib / 1024);
    patch.memoryUnit = "GiB";
    raised.push(`${WINDOWS_MIN.memoryMib / 1024} GiB of memory`);
  }
  if (!(Number(hw.diskGib) >= WINDOWS_MIN.diskGib)) {
    patch.diskGib = String(WINDOWS_MIN.diskGib);
    raised.push(`a ${WINDOWS_MIN.diskGib} GiB disk`);
  }
  return { patch, raised };
}

/** The `windows` section of POST /v1/vms: the computer name always (so the CLI line makes a
 * section too), the other fields when they differ from the gateway's defaults. */
export function windowsSection(win: WindowsDraft, vmName: string): WindowsSection {
  const section: WindowsSection = { computer_name: win.computerName || vmName };
  if (win.adminUser !== NEW_WINDOWS.adminUser) section.admin_user = win.adminUser;
  if (win.adminPassword) section.admin_password = win.adminPassword;
  if (win.timezone.trim() !== NEW_WINDOWS.timezone) section.timezone = win.timezone.trim();
  if (win.locale !== NEW_WINDOWS.locale) section.locale = win.locale;
  if (win.keyboard.trim()) section.keyboard = win.keyboard.trim();
  if (win.productKey) section.product_key = win.productKey;
  if (!win.enableRdp) section.enable_rdp = false;
  if (win.enableWinrm) section.enable_winrm = true;
  const commands = commandsOf(win);
  if (commands.length) section.first_logon_commands = commands;
  if (win.version !== NEW_WINDOWS.version) section.windows_version = win.version as WindowsVersion;
  if (win.secureBoot) section.secure_boot = true;
  if (win.join) {
    section.domain_join = { domain: win.joinDomain, user: win.joinUser, password: win.joinPassword,
                            ...(win.joinOu ? { ou: win.joinOu } : {}) };
  }
  return section;
}

/** Fields `lq vm create` has no flag for: they go in a `--windows FILE` (YAML; JSON scalars are YAML). */
export function windowsFileFields(section: WindowsSection): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ["admin_user", "keyboard", "windows_version"] as const) {
    if (section[key] !== undefined) out[key] = section[key];
  }
  return out;
}

export function windowsFileText(fields: Record<string, unknown>): string {
  return Object.entries(fields).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("\n") + "\n";
}

/** The `lq vm create` arguments for the section (the password is prompted for, never written). */
export function windowsArgs(section: WindowsSection): string[] {
  const args = ["--os-type", "windows"];
  if (section.computer_name) args.push("--windows-computer-name", section.computer_name);
  if (section.admin_password) args.push("--windows-password-prompt");
  if (section.timezone) args.push("--windows-timezone", section.timezone);
  if (section.locale) args.push("--windows-locale", section.locale);
  if (section.product_key) args.push("--windows-product-key", section.product_key);
  if (section.enable_winrm) args.push("--windows-winrm");
  if (section.enable_rdp === false) args.push("--windows-no-rdp");
  if (section.secure_boot) args.push("--windows-secure-boot");
  for (const command of section.first_logon_commands ?? []) args.push("--windows-first-logon", command);
  const join = section.domain_join;
  // The join password is prompted for by lq (never a flag).
  if (join) args.push("--windows-join-domain", join.domain, "--windows-join-user", join.user);
  if (join?.ou) args.push("--windows-join-ou", join.ou);
  if (Object.keys(windowsFileFields(section)).length) args.push("--windows", "windows.yaml");
  return args;
}

export function versionLabel(version: string): string {
  return WINDOWS_VERSIONS.find((v) => v.value === version)?.label ?? version;
}

/** What the Review step shows about the Windows setup. */
export function windowsReviewRows(win: WindowsDraft, vmName: string): { label: string; value: string }[] {
  const commands = commandsOf(win);
  return [
    { label: "Computer name", value: win.computerName || `${vmName} (the VM name)` },
    { label: "Administrator", value: `${win.adminUser}, password ${win.adminPassword ? "set" : "none"}` },
    { label: "Time zone", value: win.timezone },
    { label: "Locale", value: win.keyboard ? `${win.locale}, keyboard ${win.keyboard}` : win.locale },
    { label: "Product key", value: win.productKey ? "given" : "none" },
    { label: "Remote access", value: [win.enableRdp ? "RDP on" : "RDP off", win.enableWinrm ? "WinRM on" : "WinRM off"].join(", ") },
    { label: "First-logon commands", value: String(commands.length) },
    { label: "Windows version", value: `${versionLabel(win.version)} (drivers ${win.version})` },
    { label: "Secure Boot", value: win.secureBoot ? "on" : "off" },
    { label: "Domain join", value: win.join ? `${win.joinDomain} as ${win.joinUser}${win.joinOu ? ` in ${win.joinOu}` : ""}` : "none" },
  ];
}
