// The same public-key checks the gateway makes (libs/common/cloud_init.py validate_ssh_key), so
// a bad paste is flagged next to its entry before anything is sent.

export const SSH_KEY_TYPES = new Set([
  "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
  "ssh-ed25519-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com",
  "ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
  "ecdsa-sha2-nistp521-cert-v01@openssh.com",
]);

function decodeBase64(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  try {
    const raw = atob(text);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** Why `key` is not an OpenSSH public key line, or null when it is one. */
export function sshKeyProblem(key: string): string | null {
  const stripped = key.trim();
  if (!stripped) return "paste a public key";
  if (/[\r\n]/.test(stripped)) return "one key per entry: the key contains a line break";
  const fields = stripped.split(/\s+/);
  if (fields.length < 2) return "expected 'TYPE BASE64 [COMMENT]', e.g. the content of ~/.ssh/id_ed25519.pub";
  const [type, data] = fields;
  if (type.startsWith("-----BEGIN")) return "this is a private key: paste the .pub file instead";
  if (!SSH_KEY_TYPES.has(type)) return `unknown key type '${type.slice(0, 40)}'`;
  const blob = decodeBase64(data);
  if (!blob) return "the key data is not valid base64";
  if (blob.length < 4) return "the key data is too short";
  const nameLength = ((blob[0] << 24) | (blob[1] << 16) | (blob[2] << 8) | blob[3]) >>> 0;
  const inner = new TextDecoder().decode(blob.slice(4, 4 + nameLength));
  if (nameLength > 64 || inner !== type) return `the key data is not a ${type} key (truncated or mixed up?)`;
  if (blob.length <= 4 + nameLength) return "the key data holds no key material";
  return null;
}

/** "ssh-ed25519 … comment" for lists: the type, the key's end and its comment. */
export function sshKeyLabel(key: string): string {
  const [type = "", data = "", ...comment] = key.trim().split(/\s+/);
  const tail = data.length > 12 ? `…${data.slice(-8)}` : data;
  return [type, tail, comment.join(" ")].filter(Boolean).join(" ");
}
