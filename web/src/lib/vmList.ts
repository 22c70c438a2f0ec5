// The VM list's filters and pages (GET /v1/vms?node=&state=&label=&limit=&cursor=) and VM
// labels as people type them ("team=web, tier=db"). Pure functions.

export const PAGE_SIZES = [25, 50, 100, 200] as const;
export const DEFAULT_PAGE_SIZE = 50;
export const VM_STATES = ["pending", "creating", "starting", "running", "ready", "stopping", "stopped", "paused",
  "rebooting", "deleting", "error", "unknown"] as const;

export interface ListFilters {
  state: string; // "" = any
  node: string; // "" = any
  labels: string; // "team=web tier" (each key or key=value; all must match)
  limit: number;
}

export const NO_FILTERS: ListFilters = { state: "", node: "", labels: "", limit: DEFAULT_PAGE_SIZE };

const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
const LABEL_VALUE = /^[A-Za-z0-9._-]{0,63}$/;
const MAX_LABELS = 64;

function words(text: string): string[] {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

/** The label filters typed, each `key` or `key=value`, with the first problem found. */
export function labelFilters(text: string): { filters: string[]; error: string } {
  const filters = words(text);
  for (const f of filters) {
    const [key, ...rest] = f.split("=");
    if (!LABEL_KEY.test(key)) return { filters, error: `'${key}' is not a label key (lower-case letters, digits, '.', '_', '/', '-').` };
    if (rest.length && !LABEL_VALUE.test(rest.join("="))) return { filters, error: `'${rest.join("=")}' is not a label value.` };
  }
  return { filters, error: "" };
}

/** Labels for a create request from "key=value" words; errors name the word. */
export function parseLabels(text: string): { labels: Record<string, string>; error: string } {
  const labels: Record<string, string> = {};
  const list = words(text);
  if (list.length > MAX_LABELS) return { labels, error: `At most ${MAX_LABELS} labels.` };
  for (const word of list) {
    const at = word.indexOf("=");
    const key = at < 0 ? word : word.slice(0, at);
    const value = at < 0 ? "" : word.slice(at + 1);
    if (!LABEL_KEY.test(key)) return { labels, error: `'${key}' is not a label key: lower-case letters, digits, '.', '_', '/', '-'.` };
    if (!LABEL_VALUE.test(value)) return { labels, error: `'${value}' is not a label value: letters, digits, '.', '_', '-' (at most 63).` };
    if (key in labels) return { labels, error: `Label '${key}' is given twice.` };
    labels[key] = value;
  }
  return { labels, error: "" };
}

export function labelsText(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {}).map(([k, v]) => (v ? `${k}=${v}` : k)).join(", ");
}

/** The query string of one page. */
export function listQuery(filters: ListFilters, cursor: string | null): string {
  const query = new URLSearchParams();
  query.set("limit", String(filters.limit));
  if (filters.state) query.set("state", filters.state);
  if (filters.node) query.set("node", filters.node);
  for (const label of labelFilters(filters.labels).filters) query.append("label", label);
  if (cursor) query.set("cursor", cursor);
  return query.toString();
}

/** Filters from the page's own URL (so a filtered list can be linked), and back. */
export function filtersFromUrl(search: string): ListFilters {
  const query = new URLSearchParams(search);
  // Any page size the API takes may come in a link; the menu offers the usual ones.
  const limit = Number(query.get("limit"));
  return {
    state: query.get("state") ?? "",
    node: query.get("node") ?? "",
    labels: query.getAll("label").join(" "),
    limit: Number.isInteger(limit) && limit >= 1 && limit <= 1000 ? limit : DEFAULT_PAGE_SIZE,
  };
}

export function filtersToUrl(filters: ListFilters): string {
  const query = new URLSearchParams();
  if (filters.state) query.set("state", filters.state);
  if (filters.node) query.set("node", filters.node);
  for (const label of labelFilters(filters.labels).filters) query.append("label", label);
  if (filters.limit !== DEFAULT_PAGE_SIZE) query.set("limit", String(filters.limit));
  const text = query.toString();
  return text ? `?${text}` : "";
}
