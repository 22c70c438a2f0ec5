// Rendering of the three tables (VMs, nodes, images) from plain records.
import { ago, formatBytes, formatMiB, h } from "./dom.js";

// Which buttons a state allows (mirrors limiquantix.common.vms.TRANSITIONS; the API decides).
const CAN_START = new Set(["stopped", "error"]);
const CAN_STOP = new Set(["running", "ready"]);
const BUSY = new Set(["pending", "creating", "starting", "stopping", "rebooting", "deleting"]);

function stateBadge(state, extraTitle = "") {
  return h("span", { class: `badge state-${state}${BUSY.has(state) ? " busy" : ""}`, title: extraTitle || null }, state);
}

function copyIcon() {
  // Drawn, not a glyph: system fonts differ in which symbols they have.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  for (const [x, y] of [[5, 5], [2, 2]]) {
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x, y, width: 9, height: 9, rx: 1.5, fill: "none", stroke: "currentColor", "stroke-width": 1.4 })
      .forEach(([k, v]) => rect.setAttribute(k, String(v)));
    svg.append(rect);
  }
  return svg;
}

async function copyText(button, code, text) {
  try {
    // The clipboard API exists only in secure contexts (https, localhost).
    await navigator.clipboard.writeText(text);
    button.classList.add("copied");
    button.title = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(code);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    button.title = "Selected: press Ctrl+C";
  }
}

function sshCell(vm) {
  if (!vm.ssh_command) return h("td", { class: "muted" }, "—");
  const code = h("code", { title: vm.ssh_command }, vm.ssh_command);
  const button = h("button", {
    class: "icon copy", type: "button", title: "Copy", "aria-label": `Copy SSH command of ${vm.name}`,
  }, copyIcon());
  button.addEventListener("click", () => copyText(button, code, vm.ssh_command));
  return h("td", { class: "ssh" }, code, button);
}

/**
 * VM rows. handlers: {start(vm), stop(vm), remove(vm)}; armed: Set of VM ids whose Delete
 * button was clicked once (a second click within a few seconds deletes).
 */
export function renderVms(tbody, vms, handlers, armed) {
  const rows = vms.map((vm) => {
    const error = vm.error ? `${vm.error.code}: ${vm.error.message}${vm.error.hint ? ` — ${vm.error.hint}` : ""}` : "";
    const progress = vm.image_progress !== undefined && vm.image_progress !== null && vm.state === "creating"
      ? h("span", { class: "muted small" }, ` ${Math.round(vm.image_progress * 100)}%`) : null;
    const nameCell = h("td", { class: "name" },
      h("div", {}, h("strong", {}, vm.name)),
      h("div", { class: "muted small mono", title: `VM id ${vm.id}` }, vm.id.slice(0, 8)),
      error ? h("div", { class: "row-error small" }, error) : null);
    const deleting = armed.has(vm.id);
    return h("tr", { dataset: { vmId: vm.id, vmName: vm.name, state: vm.state } },
      nameCell,
      h("td", { class: "nowrap" }, stateBadge(vm.state, error), progress),
      h("td", { class: "nowrap" }, vm.node || h("span", { class: "muted" }, "—")),
      h("td", { class: "num" }, vm.vcpus),
      h("td", { class: "num" }, formatMiB(vm.memory_mib)),
      h("td", { class: "image", title: vm.image }, vm.image),
      sshCell(vm),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small-btn", disabled: !CAN_START.has(vm.state), onclick: () => handlers.start(vm) }, "Start"),
        h("button", { type: "button", class: "small-btn", disabled: !CAN_STOP.has(vm.state), onclick: () => handlers.stop(vm) }, "Stop"),
        h("a", { class: "small-btn link", href: `/v1/vms/${encodeURIComponent(vm.id)}/console`, target: "_blank", rel: "noopener" }, "Console"),
        h("button", {
          type: "button", class: `small-btn danger${deleting ? " armed" : ""}`, disabled: vm.state === "deleting",
          onclick: () => handlers.remove(vm),
        }, deleting ? "Confirm delete" : "Delete")));
  });
  tbody.replaceChildren(...rows);
}

export function renderNodes(tbody, nodes) {
  tbody.replaceChildren(...nodes.map((node) => {
    const cpuUse = node.vcpus ? (node.allocated_vcpus ?? 0) / node.vcpus : 0;
    const memUse = node.memory_mib ? (node.allocated_memory_mib ?? 0) / node.memory_mib : 0;
    const status = node.status ?? "online";
    return h("tr", { dataset: { nodeId: node.id, status } },
      h("td", { class: "name" }, h("strong", {}, node.id), " ",
        h("span", { class: `badge node-${status}` }, status),
        h("div", { class: "muted small" }, [node.hostname !== node.id ? node.hostname : "", node.virt_type].filter(Boolean).join(" · "))),
      h("td", { class: "nowrap" }, meter(cpuUse), `${node.allocated_vcpus ?? 0} / ${node.vcpus}`),
      h("td", { class: "nowrap" }, meter(memUse), `${formatMiB(node.allocated_memory_mib ?? 0)} / ${formatMiB(node.memory_mib)}`),
      h("td", { class: "num" }, node.vm_count ?? 0),
      h("td", { class: "muted small" }, ago(node.last_heartbeat ?? node.heartbeat_at)));
  }));
}

function meter(fraction) {
  const pct = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  const bar = h("span");
  bar.style.width = `${pct}%`; // CSSOM, not a style attribute: the page's CSP forbids those
  return h("span", { class: "meter", title: `${pct}%` }, bar);
}

export function renderImages(tbody, images) {
  tbody.replaceChildren(...images.map((image) => {
    const done = image.bytes_total ? ` ${Math.round((100 * (image.bytes_done ?? 0)) / image.bytes_total)}%` : "";
    const busy = ["queued", "downloading", "uploading", "verifying"].includes(image.state);
    return h("tr", { dataset: { imageId: image.id } },
      h("td", { class: "name" }, h("strong", {}, image.name || image.id),
        h("div", { class: "muted small mono" }, image.id)),
      h("td", {}, [image.os, image.version].filter(Boolean).join(" ")),
      h("td", {}, h("span", { class: `badge image-${image.state}` }, image.state), busy ? done : "",
        image.error ? h("div", { class: "row-error small" }, image.error) : null),
      h("td", {}, image.format || "—"),
      h("td", { class: "num" }, formatBytes(image.virtual_size ?? image.file_size) || "—"));
  }));
}
