import { addressRows, commandOf, duration, phaseRows, since, splitArgs } from "./guest";

const T0 = "2026-01-01T10:00:00Z";
const at = (s: number) => new Date(Date.parse(T0) + s * 1000).toISOString();

describe("readiness phases", () => {
  it("list the reached ones with their offsets, the next as current, the rest to do", () => {
    const rows = phaseRows({ phase: "network", phases: { defined: at(0), booting: at(0.4), network: at(21.5) } }, { withCloudInit: true });
    expect(rows.map((r) => [r.key, r.status, r.offsetS])).toEqual([
      ["defined", "done", 0], ["booting", "done", 0.4], ["network", "done", 21.5],
      ["cloud_init_done", "current", null], ["ssh", "todo", null], ["ready", "todo", null],
    ]);
  });

  it("show cloud-init's failure instead of its success once it failed", () => {
    const rows = phaseRows({ phase: "cloud_init_failed", phases: { defined: at(0), cloud_init_failed: at(44) } }, { withCloudInit: true });
    expect(rows.map((r) => r.key)).toEqual(["defined", "booting", "network", "cloud_init_failed", "ssh", "ready"]);
    // Phases passed without a time (the node only keeps what it saw) count as done.
    expect(rows.find((r) => r.key === "booting")?.status).toBe("done");
    expect(rows.find((r) => r.key === "ssh")?.status).toBe("current");
  });

  it("leave cloud-init out without it, and mark nothing current on a stopped VM", () => {
    const rows = phaseRows({ phase: "booting", phases: { defined: at(0), booting: at(1) } }, { withCloudInit: false, failed: true });
    expect(rows.map((r) => r.key)).toEqual(["defined", "booting", "network", "ssh", "ready"]);
    expect(rows.some((r) => r.status === "current")).toBe(false);
    expect(phaseRows(undefined, { withCloudInit: true })[0].status).toBe("current");
  });
});

describe("times", () => {
  it("read as people read them", () => {
    expect(duration(4.9)).toBe("4 s");
    expect(duration(125)).toBe("2 min 05 s");
    expect(duration(3720)).toBe("1 h 02 min");
    expect(since(T0, Date.parse(at(42)))).toBe(42);
    expect(since("", 0)).toBeNull();
  });
});

describe("addresses", () => {
  it("keep their source and interface, and older records' plain list counts as the serial log's", () => {
    expect(addressRows({ ip_addresses: [{ address: "10.0.2.15", prefix: 24, interface: "enp0s10", source: "agent" },
                                        { address: "10.0.2.15", source: "serial" }] })).toEqual([
      { address: "10.0.2.15", prefix: 24, iface: "enp0s10", source: "agent" },
      { address: "10.0.2.15", prefix: null, iface: "", source: "serial" },
    ]);
    expect(addressRows({ addresses: ["192.168.1.5"] })).toEqual([{ address: "192.168.1.5", prefix: null, iface: "", source: "serial" }]);
  });
});

describe("the run-command box", () => {
  it("splits words like a shell (quotes, backslashes), without expanding anything", () => {
    expect(splitArgs("cat /etc/hostname")).toEqual(["cat", "/etc/hostname"]);
    expect(splitArgs(`ls -l '/my dir' "a \\"b\\"" c\\ d $HOME`)).toEqual(["ls", "-l", "/my dir", 'a "b"', "c d", "$HOME"]);
    expect(splitArgs("echo ''")).toEqual(["echo", ""]);
    expect(() => splitArgs("echo 'open")).toThrow(/single quote is not closed/);
  });

  it("runs through the guest's shell when asked", () => {
    expect(commandOf("df -h | tail -1", true)).toEqual(["sh", "-c", "df -h | tail -1"]);
    expect(commandOf("ipconfig /all", true, "windows")).toEqual(["cmd.exe", "/c", "ipconfig /all"]);
    expect(commandOf("uname -r", false)).toEqual(["uname", "-r"]);
  });
});
