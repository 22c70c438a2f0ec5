import type { ImageRecord, NodeInfo } from "../api/types";
import {
  cloudInitWarnings, configErrorOf, curlCommand, type Draft, firstInvalidStep, lqCommand, minimumDiskGib,
  NEW_DRAFT, requestBody, reviewRows, validateBasics, validateBoot, validateCloudInit, validateHardware,
  validatePlacement, type WizardContext,
} from "./wizard";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui";
const NOW = "2026-01-01T00:00:00Z";

function image(patch: Partial<ImageRecord>): ImageRecord {
  return { id: "img-1", name: "debian-12", state: "active", format: "qcow2", created_at: NOW, updated_at: NOW, ...patch };
}

const node: NodeInfo = { id: "node-a", status: "online", free_vcpus: 4, free_memory_mib: 2048, vcpus: 2, memory_mib: 4096 };
const images = new Map<string, ImageRecord>([
  ["img-1", image({ min_disk_gib: 3, virtual_size: 2 * 2 ** 30, os: "debian", version: "12" })],
  ["iso-1", image({ id: "iso-1", name: "installer", format: "iso", virtual_size: 5 * 2 ** 30 })],
  ["bad", image({ id: "bad", name: "broken", state: "error" })],
]);
const ctx: WizardContext = { takenNames: new Set(["web-1"]), images, nodes: [node, { id: "node-b", status: "offline" }] };

function draft(patch: Partial<Draft> = {}): Draft {
  return { ...NEW_DRAFT, name: "web-2", imageId: "img-1", diskGib: "10", memory: "1", memoryUnit: "GiB", ...patch };
}

describe("basics", () => {
  it("validates the name live: DNS label, length, unique", () => {
    expect(validateBasics(draft({ name: "" }), ctx).name).toBe("Give the VM a name.");
    expect(validateBasics(draft({ name: "Web_1" }), ctx).name).toMatch(/Lower-case letters/);
    expect(validateBasics(draft({ name: "-web" }), ctx).name).toMatch(/starting and ending/);
    expect(validateBasics(draft({ name: "a".repeat(64) }), ctx).name).toBe("At most 63 characters.");
    expect(validateBasics(draft({ name: "web-1" }), ctx).name).toBe("A VM named 'web-1' exists already.");
    expect(validateBasics(draft({ name: "web-2" }), ctx)).toEqual({});
  });
});

describe("placement", () => {
  it("accepts automatic or a live node, refuses an offline or unknown one", () => {
    expect(validatePlacement(draft({ node: "" }), ctx)).toEqual({});
    expect(validatePlacement(draft({ node: "node-a" }), ctx)).toEqual({});
    expect(validatePlacement(draft({ node: "node-b" }), ctx).node).toBe("Node 'node-b' is offline.");
    expect(validatePlacement(draft({ node: "gone" }), ctx).node).toMatch(/not known/);
    expect(validatePlacement(draft(), { ...ctx, nodes: [] }).node).toMatch(/No node is online/);
  });
});

describe("hardware", () => {
  it("reads memory in the chosen unit", () => {
    expect(requestBody(draft({ memory: "2", memoryUnit: "GiB" })).memory_mib).toBe(2048);
    expect(requestBody(draft({ memory: "512", memoryUnit: "MiB" })).memory_mib).toBe(512);
    expect(requestBody(draft({ memory: "1.5", memoryUnit: "GiB" })).memory_mib).toBe(1536);
    expect(validateHardware(draft({ memory: "32", memoryUnit: "MiB" }), ctx).memory).toMatch(/64 MiB/);
    expect(validateHardware(draft({ memory: "0.0001", memoryUnit: "GiB" }), ctx).memory).toMatch(/whole MiB/);
  });

  it("enforces the image's minimum disk (declared, or its virtual size)", () => {
    expect(minimumDiskGib(draft(), ctx)).toBe(3);
    expect(validateHardware(draft({ diskGib: "2" }), ctx).diskGib).toBe("The image needs a disk of at least 3 GiB.");
    expect(validateHardware(draft({ diskGib: "3" }), ctx)).toEqual({});
    // an ISO's size is the installer's, not a disk minimum
    expect(minimumDiskGib(draft({ boot: "iso", imageId: "iso-1" }), ctx)).toBe(0);
    expect(minimumDiskGib(draft({ boot: "none" }), ctx)).toBe(0);
  });

  it("checks vCPUs and the chosen node's free capacity", () => {
    expect(validateHardware(draft({ vcpus: "0" }), ctx).vcpus).toMatch(/1 to 256/);
    expect(validateHardware(draft({ vcpus: "1.5" }), ctx).vcpus).toMatch(/whole number/);
    expect(validateHardware(draft({ node: "node-a", vcpus: "8" }), ctx).vcpus).toBe("Node 'node-a' has 4 vCPUs free.");
    expect(validateHardware(draft({ node: "node-a", memory: "4" }), ctx).memory).toBe("Node 'node-a' has 2048 MiB free.");
  });
});

describe("boot media", () => {
  it("needs an image of the card's kind, usable, big enough", () => {
    expect(validateBoot(draft({ imageId: "" }), ctx).image).toBe("Choose a cloud image.");
    expect(validateBoot(draft({ boot: "iso", imageId: "img-1" }), ctx).image).toBe("Choose an ISO image.");
    expect(validateBoot(draft({ boot: "cloud", imageId: "iso-1" }), ctx).image).toBe("Choose a cloud image.");
    expect(validateBoot(draft({ imageId: "bad" }), ctx).image).toMatch(/is error/);
    expect(validateBoot(draft({ diskGib: "2" }), ctx).image).toMatch(/needs a disk of at least 3 GiB/);
    expect(validateBoot(draft({ boot: "none", imageId: "" }), ctx)).toEqual({});
    expect(validateBoot(draft({ boot: "iso", imageId: "iso-1" }), ctx)).toEqual({});
  });
});

describe("cloud-init", () => {
  it("checks every key, the user, the hostname and a custom config", () => {
    const errors = validateCloudInit(draft({ sshKeys: [KEY, "ssh-rsa nope!", KEY], user: "Root", hostname: "a_b",
                                             customConfig: true, userData: "  " }));
    expect(errors.sshKey0).toBeUndefined();
    expect(errors.sshKey1).toBe("the key data is not valid base64");
    expect(errors.sshKey2).toBe("this key is in the list already");
    expect(errors.user).toMatch(/Linux user name/);
    expect(errors.hostname).toMatch(/host name/);
    expect(errors.userData).toMatch(/custom cloud-config/);
  });

  it("warns with no key and no password, not otherwise", () => {
    expect(cloudInitWarnings(draft())).toHaveLength(1);
    expect(cloudInitWarnings(draft({ sshKeys: [KEY] }))).toEqual([]);
    expect(cloudInitWarnings(draft({ password: "pw" }))).toEqual([]);
    expect(cloudInitWarnings(draft({ boot: "none" }))).toEqual([]);
  });

  it("only asks for the network without cloud-init", () => {
    expect(validateCloudInit(draft({ boot: "iso", user: "Bad!" }))).toEqual({});
    expect(validateCloudInit(draft({ boot: "iso", networkMode: "bridge" })).networkSource).toMatch(/bridge/);
  });

  it("reads the server's line and column of a bad user-data", () => {
    expect(configErrorOf("invalid_user_data", { line: 5, column: 12 }, "bad")).toEqual({ line: 5, column: 12, message: "bad" });
    expect(configErrorOf("no_capacity", { line: 5 }, "x")).toBeNull();
  });
});

describe("the request", () => {
  it("sends no image and no cloud-init for boot media None", () => {
    const body = requestBody(draft({ boot: "none", sshKeys: [KEY] }));
    expect(body.image).toBeNull();
    expect(body.cloud_init).toBeUndefined();
  });

  it("sends the image and no cloud-init for an ISO", () => {
    const body = requestBody(draft({ boot: "iso", imageId: "iso-1", node: "node-a" }));
    expect(body).toMatchObject({ image: "iso-1", node: "node-a", network: { mode: "user" } });
    expect(body.cloud_init).toBeUndefined();
  });

  it("sends keys, password, hostname and the custom config for a cloud image", () => {
    const body = requestBody(draft({ sshKeys: [KEY], password: "pw", sshPwauth: true, hostname: "h",
                                     customConfig: true, userData: "#cloud-config\n" }));
    expect(body.cloud_init).toEqual({ user: "admin", ssh_authorized_keys: [KEY], password: "pw", ssh_pwauth: true,
                                      hostname: "h", user_data: "#cloud-config\n" });
    expect(requestBody(draft({ customConfig: false, userData: "#cloud-config\n" })).cloud_init?.user_data).toBeUndefined();
  });

  it("finds the first step to fix", () => {
    expect(firstInvalidStep(draft(), ctx)).toBeNull();
    expect(firstInvalidStep(draft({ name: "web-1" }), ctx)).toBe("basics");
    expect(firstInvalidStep(draft({ imageId: "" }), ctx)).toBe("boot");
  });
});

describe("equivalent commands", () => {
  it("writes the lq command with quoted keys and no secrets", () => {
    const command = lqCommand(draft({ sshKeys: [KEY], password: "s3cret", customConfig: true, node: "node-a" }), ctx);
    expect(command).toBe(`lq vm create web-2 --image debian-12 --cpus 1 --memory 1G --disk 10G --ssh-key '${KEY}' `
      + "--password-prompt --user-data user-data.yaml --network user --node node-a --wait ready");
    expect(command).not.toContain("s3cret");
    expect(lqCommand(draft({ boot: "none", memory: "768", memoryUnit: "MiB" }), ctx)).toBe(
      "lq vm create web-2 --cpus 1 --memory 768M --disk 10G --network user --wait running");
  });

  it("writes the curl call with the password left out", () => {
    const curl = curlCommand(draft({ password: "s3cret", name: "it's" }), "http://127.0.0.1:8080");
    expect(curl).toContain("curl -X POST http://127.0.0.1:8080/v1/vms");
    expect(curl).not.toContain("s3cret");
    expect(curl).toContain("<password>");
    expect(curl).toContain(`'\\''`); // the quote in the name survives the shell
  });
});

describe("review rows", () => {
  it("tell the method, the image, the key count and custom config", () => {
    const rows = Object.fromEntries(reviewRows(draft({ sshKeys: [KEY, KEY], customConfig: true }), ctx).map((r) => [r.label, r.value]));
    expect(rows["Provisioning method"]).toBe("Cloud image (automated with cloud-init)");
    expect(rows.Image).toBe("debian-12");
    expect(rows["SSH keys"]).toBe("2");
    expect(rows["Custom cloud-config"]).toBe("yes");
    expect(rows.Memory).toBe("1024 MiB");
    const none = Object.fromEntries(reviewRows(draft({ boot: "none" }), ctx).map((r) => [r.label, r.value]));
    expect(none.Image).toBe("none (blank disk)");
    expect(none["Cloud-init"]).toBe("not used");
    expect(none["SSH keys"]).toBeUndefined();
  });
});

describe("the guest agent opt-out", () => {
  it("is sent only when the agent is not wanted, and shown on the review", () => {
    const draft = { ...NEW_DRAFT, name: "web-1", imageId: "img-1" };
    expect(requestBody(draft).cloud_init?.guest_agent).toBeUndefined();
    expect(requestBody({ ...draft, guestAgent: false }).cloud_init?.guest_agent).toBe(false);
    expect(reviewRows({ ...draft, guestAgent: false }, ctx).find((r) => r.label === "Guest agent")?.value).toBe("not installed");
  });
});
