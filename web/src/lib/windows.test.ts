import type { ImageRecord } from "../api/types";
import {
  computerNameProblem, NEW_WINDOWS, osTypeOf, raiseToMinimums, validateWindows, versionOf, windowsArgs,
  windowsFileFields, windowsFileText, windowsSection, windowsWarnings,
} from "./windows";
import {
  curlCommand, type Draft, firstInvalidStep, lqCommand, NEW_DRAFT, requestBody, reviewRows, setupStepTitle,
  validateCloudInit, validateHardware, type WizardContext,
} from "./wizard";

const NOW = "2026-01-01T00:00:00Z";

function image(patch: Partial<ImageRecord>): ImageRecord {
  return { id: "win-1", name: "win2022", state: "active", format: "qcow2", created_at: NOW, updated_at: NOW, ...patch };
}

const images = new Map<string, ImageRecord>([
  ["win-1", image({ os: "windows-server", version: "2022", virtual_size: 20 * 2 ** 30 })],
  ["deb-1", image({ id: "deb-1", name: "debian-12", os: "debian", version: "12" })],
  ["iso-1", image({ id: "iso-1", name: "win11-installer", format: "iso", os: "windows", version: "11" })],
]);
const ctx: WizardContext = { takenNames: new Set(), images, nodes: [{ id: "node-a", status: "online" }] };

function windowsDraft(patch: Partial<Draft> = {}): Draft {
  return { ...NEW_DRAFT, name: "web-2", imageId: "win-1", osType: "windows", vcpus: "2", memory: "4", memoryUnit: "GiB",
           diskGib: "64", ...patch };
}

describe("the OS family", () => {
  it("follows the image's os as the gateway does", () => {
    expect(osTypeOf(images.get("win-1"))).toBe("windows");
    expect(osTypeOf(image({ os: " Windows 11" }))).toBe("windows");
    expect(osTypeOf(images.get("deb-1"))).toBe("linux");
    expect(osTypeOf(undefined)).toBe("linux");
  });

  it("suggests the driver folder from the image's version", () => {
    expect(versionOf(images.get("win-1"))).toBe("2k22");
    expect(versionOf(image({ name: "win10", os: "windows", version: "10" }))).toBe("w10");
    expect(versionOf(image({ os: "windows", version: "11", name: "win11" }))).toBe("w11");
    expect(versionOf(image({ name: "srv", os: "windows-server", version: "2025" }))).toBe("2k25");
  });

  it("retitles the setup step", () => {
    expect(setupStepTitle({ boot: "cloud", osType: "windows" })).toBe("Windows setup");
    expect(setupStepTitle({ boot: "iso", osType: "windows" })).toBe("Windows setup");
    expect(setupStepTitle({ boot: "none", osType: "windows" })).toBe("Network");
    expect(setupStepTitle({ boot: "cloud", osType: "linux" })).toBe("Cloud-init");
  });
});

describe("the NetBIOS rule", () => {
  it("refuses what the gateway refuses, for a given name or the VM name it defaults to", () => {
    expect(computerNameProblem("WEB-01", "web")).toBe("");
    expect(computerNameProblem("", "web-2")).toBe("");
    expect(computerNameProblem("A".repeat(16), "web")).toBe("The computer name is 16 characters; a Windows computer name has 1 to 15.");
    expect(computerNameProblem("", "a-very-long-vm-name")).toMatch(/^The VM name 'a-very-long-vm-name' \(the default computer name\) is 19 characters.*give one/);
    expect(computerNameProblem("web_1", "web")).toMatch(/only letters, digits and '-'/);
    expect(computerNameProblem("12345", "web")).toMatch(/only digits/);
    expect(computerNameProblem("-web", "web")).toMatch(/start or end with '-'/);
    expect(computerNameProblem("web-", "web")).toMatch(/start or end with '-'/);
  });
});

describe("the Windows setup fields", () => {
  it("are checked like the gateway's schema", () => {
    expect(validateWindows(NEW_WINDOWS, "web-2")).toEqual({});
    const errors = validateWindows({ ...NEW_WINDOWS, adminUser: "1admin", locale: "english", productKey: "ABCDE-12345",
                                     timezone: "", adminPassword: "x".repeat(128),
                                     firstLogon: Array.from({ length: 33 }, (_, i) => `echo ${i}`).join("\n") }, "web-2");
    expect(Object.keys(errors).sort()).toEqual(["win.adminPassword", "win.adminUser", "win.firstLogon", "win.locale",
                                                "win.productKey", "win.timezone"]);
    expect(validateWindows({ ...NEW_WINDOWS, firstLogon: `ok\n${"x".repeat(1025)}` }, "w")["win.firstLogon"]).toMatch(/Command 2/);
    expect(validateWindows(NEW_WINDOWS, "a-very-long-vm-name")["win.computerName"]).toMatch(/19 characters/);
  });

  it("warn without a password and with no way in", () => {
    expect(windowsWarnings(NEW_WINDOWS)[0]).toMatch(/No administrator password/);
    expect(windowsWarnings({ ...NEW_WINDOWS, adminPassword: "pw" })).toEqual([]);
    expect(windowsWarnings({ ...NEW_WINDOWS, adminPassword: "pw", enableRdp: false })).toEqual([
      "RDP and WinRM are both off: the console is the only way in."]);
  });

  it("are validated on the setup step only for a Windows VM with boot media", () => {
    expect(validateCloudInit(windowsDraft({ win: { ...NEW_WINDOWS, computerName: "x_y" } }))["win.computerName"]).toBeTruthy();
    // The Linux user is not asked of Windows.
    expect(validateCloudInit(windowsDraft({ user: "Bad!" }))).toEqual({});
    expect(validateCloudInit(windowsDraft({ boot: "none", name: "a-very-long-vm-name" }))).toEqual({});
  });
});

describe("the minimums", () => {
  it("are enforced on the hardware step for Windows", () => {
    const errors = validateHardware(windowsDraft({ vcpus: "1", memory: "2", diskGib: "40" }), ctx);
    expect(errors).toEqual({ vcpus: "Windows needs at least 2 vCPUs.", memory: "Windows needs at least 4 GiB of memory.",
                             diskGib: "Windows needs a disk of at least 64 GiB." });
    expect(validateHardware(windowsDraft(), ctx)).toEqual({});
    expect(validateHardware(windowsDraft({ osType: "linux", vcpus: "1", memory: "2", diskGib: "40" }), ctx)).toEqual({});
    // and before submit: the create goes back to the first step to fix
    expect(firstInvalidStep(windowsDraft({ memory: "2048", memoryUnit: "MiB" }), ctx)).toBe("hardware");
    expect(firstInvalidStep(windowsDraft(), ctx)).toBeNull();
  });

  it("are what choosing Windows raises the hardware to", () => {
    expect(raiseToMinimums({ vcpus: "1", memoryMib: 1024, diskGib: "10" })).toEqual({
      patch: { vcpus: "2", memory: "4", memoryUnit: "GiB", diskGib: "64" },
      raised: ["2 vCPUs", "4 GiB of memory", "a 64 GiB disk"],
    });
    expect(raiseToMinimums({ vcpus: "4", memoryMib: 8192, diskGib: "100" })).toEqual({ patch: {}, raised: [] });
  });
});

describe("the request", () => {
  it("sends os_type and the windows section (computer name always, the rest when not default)", () => {
    const body = requestBody(windowsDraft({ win: { ...NEW_WINDOWS, adminPassword: "pw", enableRdp: false, enableWinrm: true,
                                                   firstLogon: "echo a\n\n  echo b  ", productKey: "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
                                                   version: "2k22", secureBoot: true, timezone: "W. Europe Standard Time" } }));
    expect(body.os_type).toBe("windows");
    expect(body.windows).toEqual({ computer_name: "web-2", admin_password: "pw", enable_rdp: false, enable_winrm: true,
                                   first_logon_commands: ["echo a", "echo b"], product_key: "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
                                   windows_version: "2k22", secure_boot: true, timezone: "W. Europe Standard Time" });
    // Windows does not get the Linux cloud-init user and keys
    expect(body.cloud_init).toBeUndefined();
  });

  it("sends a config drive for a Windows image with cloudbase-init, and for Linux", () => {
    expect(requestBody(windowsDraft({ datasource: "configdrive" })).cloud_init).toEqual({ datasource: "configdrive" });
    const linux = requestBody({ ...NEW_DRAFT, name: "l", imageId: "deb-1", datasource: "configdrive" });
    expect(linux.cloud_init?.datasource).toBe("configdrive");
    expect(linux.os_type).toBeUndefined();
    expect(requestBody({ ...NEW_DRAFT, name: "l", imageId: "deb-1" }).cloud_init?.datasource).toBeUndefined();
  });

  it("sends no windows section without boot media (no seed), but the OS family", () => {
    const body = requestBody(windowsDraft({ boot: "none", imageId: "" }));
    expect(body.os_type).toBe("windows");
    expect(body.windows).toBeUndefined();
  });

  it("says linux when the user overrides a Windows image", () => {
    expect(requestBody(windowsDraft({ osType: "linux" }), ctx).os_type).toBe("linux");
  });
});

describe("the equivalent commands", () => {
  it("write the --windows-* flags, prompt for the password and wait for running", () => {
    const draft = windowsDraft({ win: { ...NEW_WINDOWS, computerName: "WEB01", adminPassword: "s3cret", locale: "de-DE",
                                        enableWinrm: true, firstLogon: "echo hi there" } });
    const lq = lqCommand(draft, ctx);
    expect(lq).toBe("lq vm create web-2 --image win2022 --cpus 2 --memory 4G --disk 64G --os-type windows "
      + "--windows-computer-name WEB01 --windows-password-prompt --windows-locale de-DE --windows-winrm "
      + "--windows-first-logon 'echo hi there' --network user --wait running");
    expect(lq).not.toContain("s3cret");
    const curl = curlCommand(draft, "http://gw");
    expect(curl).not.toContain("s3cret");
    expect(curl).toContain(`"admin_password":"<password>"`);
  });

  it("put what has no flag in windows.yaml", () => {
    const section = windowsSection({ ...NEW_WINDOWS, adminUser: "ops", keyboard: "0407:00000407", version: "2k19" }, "web-2");
    expect(windowsFileFields(section)).toEqual({ admin_user: "ops", keyboard: "0407:00000407", windows_version: "2k19" });
    expect(windowsFileText(windowsFileFields(section))).toBe('admin_user: "ops"\nkeyboard: "0407:00000407"\nwindows_version: "2k19"\n');
    expect(windowsArgs(section)).toContain("windows.yaml");
    expect(windowsArgs(windowsSection(NEW_WINDOWS, "web-2"))).toEqual(["--os-type", "windows", "--windows-computer-name", "web-2"]);
  });

  it("write --datasource for a config drive", () => {
    expect(lqCommand({ ...NEW_DRAFT, name: "l", imageId: "deb-1", datasource: "configdrive" }, ctx)).toContain("--datasource configdrive");
  });
});

describe("the review", () => {
  it("shows the OS family, the minimums-raised hardware and every Windows setting", () => {
    const rows = Object.fromEntries(reviewRows(windowsDraft({ win: { ...NEW_WINDOWS, adminPassword: "pw", enableWinrm: true } }), ctx)
      .map((r) => [r.label, r.value]));
    expect(rows["OS family"]).toBe("Windows (UEFI, TPM 2.0, Hyper-V)");
    expect(rows["Provisioning method"]).toBe("Cloud image (Windows, sysprepped: unattend.xml)");
    expect(rows["Computer name"]).toBe("web-2 (the VM name)");
    expect(rows.Administrator).toBe("admin, password set");
    expect(rows["Remote access"]).toBe("RDP on, WinRM on");
    expect(rows["Seed format"]).toBe("NoCloud (cidata)");
    expect(rows["SSH keys"]).toBeUndefined();
    const iso = Object.fromEntries(reviewRows(windowsDraft({ boot: "iso", imageId: "iso-1" }), ctx).map((r) => [r.label, r.value]));
    expect(iso["Provisioning method"]).toBe("ISO image (unattended Windows install: Autounattend.xml)");
  });
});

describe("the domain join", () => {
  const join = { ...NEW_WINDOWS, join: true, joinDomain: "corp.example.com", joinUser: "CORP\\joiner", joinPassword: "j0in" };

  it("is checked like the gateway's schema", () => {
    expect(validateWindows(join, "web-2")).toEqual({});
    const errors = validateWindows({ ...join, joinDomain: "corp", joinUser: "", joinPassword: "", joinOu: "DC=corp" }, "web-2");
    expect(Object.keys(errors).sort()).toEqual(["win.joinDomain", "win.joinOu", "win.joinPassword", "win.joinUser"]);
    // Off: its fields are not asked for.
    expect(validateWindows({ ...join, join: false, joinDomain: "x" }, "web-2")).toEqual({});
  });

  it("goes in the section, with lq flags and the password only as a placeholder in curl", () => {
    const section = windowsSection({ ...join, joinOu: "OU=Servers,DC=corp,DC=example,DC=com" }, "web-2");
    expect(section.domain_join).toEqual({ domain: "corp.example.com", user: "CORP\\joiner", password: "j0in",
                                          ou: "OU=Servers,DC=corp,DC=example,DC=com" });
    expect(windowsArgs(section).join(" ")).toContain(
      "--windows-join-domain corp.example.com --windows-join-user CORP\\joiner --windows-join-ou OU=Servers");
    const curl = curlCommand({ ...NEW_DRAFT, name: "web-2", imageId: "win-1", osType: "windows", win: join }, "http://gw");
    expect(curl).not.toContain("j0in");
    expect(curl).toContain(`"domain_join":{"domain":"corp.example.com","user":"CORP\\\\joiner","password":"<password>"}`);
    expect(lqCommand({ ...NEW_DRAFT, name: "web-2", imageId: "win-1", osType: "windows", win: join }, ctx)).toContain(
      "--windows-join-user 'CORP\\joiner'");
  });
});
