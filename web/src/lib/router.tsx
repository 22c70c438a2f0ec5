// A small client-side router: the gateway answers index.html for every app route, the app picks
// the page from location.pathname. Links are real <a href> (open in new tab works).
import { type AnchorHTMLAttributes, type MouseEvent, useSyncExternalStore } from "react";

const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

function current(): string {
  return window.location.pathname + window.location.search;
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === current()) return;
  if (options.replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  for (const listener of listeners) listener();
  window.scrollTo(0, 0);
}

/** The current path and query, re-rendering on navigation. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, current);
  const url = new URL(href, "http://x");
  return { path: url.pathname, query: url.searchParams };
}

export interface Match {
  page: "vms" | "wizard" | "vm" | "images" | "nodes" | "events" | "not-found";
  vm?: string;
  tab?: string;
}

/** Which page a path shows (the gateway serves index.html for exactly these prefixes). */
export function match(path: string): Match {
  const parts = path.replace(/\/+$/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts[0] === "ui" && parts.length === 1)) return { page: "vms" };
  if (parts[0] === "vms") {
    if (parts.length === 1) return { page: "vms" };
    if (parts[1] === "new" && parts.length === 2) return { page: "wizard" };
    if (parts.length <= 3) return { page: "vm", vm: parts[1], tab: parts[2] ?? "overview" };
  }
  if (parts.length === 1 && (parts[0] === "images" || parts[0] === "nodes" || parts[0] === "events")) {
    return { page: parts[0] };
  }
  return { page: "not-found" };
}

export function Link({ href, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={handle} {...rest} />;
}
