import { sshKeyLabel, sshKeyProblem } from "./sshKey";

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui";
// An RSA type with an ed25519 blob: a mixed-up paste.
const MIXED = "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz x";

describe("sshKeyProblem", () => {
  it("accepts an OpenSSH public key line, with or without a comment", () => {
    expect(sshKeyProblem(KEY_A)).toBeNull();
    expect(sshKeyProblem(KEY_A.split(" ").slice(0, 2).join(" "))).toBeNull();
    expect(sshKeyProblem(`  ${KEY_A}\n`)).toBeNull();
  });

  it("says what is wrong with a bad paste", () => {
    expect(sshKeyProblem("")).toBe("paste a public key");
    expect(sshKeyProblem("ssh-ed25519")).toMatch(/expected 'TYPE BASE64/);
    expect(sshKeyProblem("ssh-foo AAAA")).toBe("unknown key type 'ssh-foo'");
    expect(sshKeyProblem("ssh-ed25519 not-base64!")).toBe("the key data is not valid base64");
    expect(sshKeyProblem(MIXED)).toMatch(/not a ssh-rsa key/);
    expect(sshKeyProblem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")).toBe("the key data holds no key material");
    expect(sshKeyProblem("-----BEGIN OPENSSH PRIVATE KEY----- abc")).toMatch(/private key/);
    expect(sshKeyProblem(`${KEY_A}\n${KEY_A}`)).toMatch(/line break/);
  });

  it("labels a key by type, tail and comment", () => {
    expect(sshKeyLabel(KEY_A)).toBe("ssh-ed25519 …De5sQ2Tz a@ui");
  });
});
