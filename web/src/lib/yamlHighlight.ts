// A small YAML (cloud-config) tokenizer for the editor's highlighted overlay. It is a colouring
// aid, not a parser: the gateway validates the document and reports line and column.

export type TokenKind = "comment" | "directive" | "key" | "string" | "number" | "bool" | "punct" | "text";

export interface Token {
  kind: TokenKind;
  text: string;
}

const SCALAR = /^(true|false|yes|no|on|off|null|~)$/i;
const NUMBER = /^[-+]?(\d[\d_]*)(\.\d+)?([eE][-+]?\d+)?$|^0x[0-9a-fA-F]+$|^0o[0-7]+$/;

function scalarTokens(text: string): Token[] {
  const tokens: Token[] = [];
  let rest = text;
  while (rest) {
    const space = /^\s+/.exec(rest);
    if (space) {
      tokens.push({ kind: "text", text: space[0] });
      rest = rest.slice(space[0].length);
      continue;
    }
    if (rest.startsWith("#")) {
      tokens.push({ kind: "comment", text: rest });
      break;
    }
    const quoted = /^("(?:[^"\\]|\\.)*"?|'(?:[^']|'')*'?)/.exec(rest);
    if (quoted) {
      tokens.push({ kind: "string", text: quoted[0] });
      rest = rest.slice(quoted[0].length);
      continue;
    }
    const punct = /^[[\]{},|>&*!]/.exec(rest);
    if (punct) {
      tokens.push({ kind: "punct", text: punct[0] });
      rest = rest.slice(1);
      continue;
    }
    const word = /^[^\s[\]{},#]+(?:#[^\s[\]{},]*)*/.exec(rest);
    const text2 = word ? word[0] : rest[0];
    const kind: TokenKind = SCALAR.test(text2) ? "bool" : NUMBER.test(text2) ? "number" : "text";
    tokens.push({ kind, text: text2 });
    rest = rest.slice(text2.length);
  }
  return tokens;
}

/** The tokens of one line (whitespace kept, so joined they give the line back). */
export function highlightLine(line: string, index: number): Token[] {
  if (index === 0 && /^#(cloud-config|!)/.test(line)) return [{ kind: "directive", text: line }];
  const comment = /^(\s*)(#.*)$/.exec(line);
  if (comment) {
    const parts: Token[] = [{ kind: "text", text: comment[1] }, { kind: "comment", text: comment[2] }];
    return parts.filter((t) => t.text);
  }
  const tokens: Token[] = [];
  let rest = line;
  const indent = /^(\s*)((?:-\s+)*)/.exec(rest);
  if (indent && indent[0]) {
    if (indent[1]) tokens.push({ kind: "text", text: indent[1] });
    if (indent[2]) tokens.push({ kind: "punct", text: indent[2] });
    rest = rest.slice(indent[0].length);
  }
  const key = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{[][^:#]*?)(\s*:)(?=\s|$)/.exec(rest);
  if (key) {
    tokens.push({ kind: "key", text: key[1] }, { kind: "punct", text: key[2] });
    rest = rest.slice(key[0].length);
  }
  return [...tokens, ...scalarTokens(rest)];
}
