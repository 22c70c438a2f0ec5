// The Limiquantix web UI: VMs, nodes and images, kept live from GET /v1/events.
import { api, ApiError, getToken, itemsOf, setToken } from "./api.js";
import { h } from "./dom.js";
import { EventStream } from "./sse.js";
import { renderImages, renderNodes, renderVms } from "./views.js";

const EVENT_TYPES = [
  "vm.state_changed", "vm.guest_ready", "vm.action_failed", "vm.deleted",
  "node.state_changed", "image.state_changed", "image.progress",
];
const NODE_POLL_MS = 5000; // allocations change with every heartbeat, which sends no event
const ARM_DELETE_MS = 4000;

const $ = (id) => document.getElementById(id);

const state = {
  vms: new Map(),
  nodes: [],
  images: [],
  armed: new Set(), // VM ids whose Delete was clicked once
  stream: null,
  refreshing: new Map(), // VM id -> pending timer of a coalesced GET
};

// ---- errors: one line, with the hint ------------------------------------------------------

function showError(err) {
  const text = $("error-text");
  if (err instanceof ApiError) {
    // One line (it wraps when long, never truncates): the hint is what the user needs most.
    text.replaceChildren(h("strong", {}, err.code), `: ${err.detail}`,
      err.hint ? h("span", { class: "hint" }, ` — ${err.hint}`) : "");
    text.title = err.requestId ? `request id ${err.requestId}` : "";
  } else {
    text.textContent = `error: ${err.message ?? err}`;
  }
  $("error").hidden = false;
  if (err instanceof ApiError && err.status === 401) askToken(line);
}

function clearError() {
  $("error").hidden = true;
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

// ---- rendering ----------------------------------------------------------------------------

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    const vms = [...state.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
    renderVms($("vms").tBodies[0], vms, { start, stop, remove }, state.armed);
    $("vm-count").textContent = vms.length ? String(vms.length) : "";
    $("vms-empty").hidden = vms.length > 0;
    $("vms").hidden = vms.length === 0;
    renderNodes($("nodes").tBodies[0], state.nodes);
    $("node-count").textContent = state.nodes.length ? String(state.nodes.length) : "";
    $("nodes-empty").hidden = state.nodes.length > 0;
    renderImages($("images").tBodies[0], state.images);
    $("image-count").textContent = state.images.length ? String(state.images.length) : "";
    $("images-empty").hidden = state.images.length > 0;
    $("images-empty").textContent = state.imagesUnavailable
      ? "This gateway has no image catalog (GET /v1/images): use a node-local image path."
      : "No images in the catalog.";
    fillFormChoices();
  });
}

function fillFormChoices() {
  $("image-options").replaceChildren(...state.images.map((img) =>
    h("option", { value: img.id }, [img.name, img.state].filter(Boolean).join(" · "))));
  const select = document.querySelector("#create-form select[name=node]");
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "automatic"),
    ...state.nodes.map((n) => h("option", { value: n.id }, n.id)));
  select.value = state.nodes.some((n) => n.id === chosen) ? chosen : "";
}

// ---- loading ------------------------------------------------------------------------------

async function loadVms() {
  const vms = itemsOf(await api("GET", "/v1/vms"), "vms");
  state.vms = new Map(vms.map((vm) => [vm.id, vm]));
  render();
}

async function loadNodes() {
  state.nodes = itemsOf(await api("GET", "/v1/nodes"), "nodes");
  render();
}

async function loadImages() {
  try {
    state.images = itemsOf(await api("GET", "/v1/images"), "images");
    state.imagesUnavailable = false;
  } catch (err) {
    // A gateway without the image routes still runs VMs from node-local paths.
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    state.images = [];
    state.imagesUnavailable = true;
  }
  render();
}

async function loadAll() {
  const results = await Promise.allSettled([loadVms(), loadNodes(), loadImages()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showError(failed.reason);
  else clearError();
}

/** Fetch one VM again soon (several events in a burst cost one GET). */
function refreshVm(id) {
  if (state.refreshing.has(id)) return;
  state.refreshing.set(id, setTimeout(async () => {
    state.refreshing.delete(id);
    try {
      const vm = await api("GET", `/v1/vms/${encodeURIComponent(id)}`);
      if (vm) state.vms.set(vm.id, vm);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) state.vms.delete(id);
      else showError(err);
    }
    render();
  }, 150));
}

let nodesTimer = null;
/** Node allocations follow VM changes; one GET for a burst of events. */
function refreshNodesSoon() {
  clearTimeout(nodesTimer);
  nodesTimer = setTimeout(() => guarded(loadNodes), 300);
}

let imagesTimer = null;
function refreshImagesSoon() {
  clearTimeout(imagesTimer);
  imagesTimer = setTimeout(() => guarded(loadImages), 500);
}

// ---- the live stream ----------------------------------------------------------------------

function onEvent(type, event) {
  switch (type) {
    case "vm.state_changed": {
      const vm = state.vms.get(event.vm_id);
      // Show the new state at once; the full record (node, ssh command...) follows.
      if (vm) state.vms.set(vm.id, { ...vm, state: event.state, error: event.error ?? vm.error });
      refreshVm(event.vm_id);
      refreshNodesSoon();
      render();
      break;
    }
    case "vm.guest_ready":
    case "vm.action_failed":
      refreshVm(event.vm_id);
      break;
    case "vm.deleted":
      state.vms.delete(event.vm_id);
      state.armed.delete(event.vm_id);
      refreshNodesSoon();
      render();
      break;
    case "node.state_changed":
      guarded(loadNodes);
      break;
    case "image.state_changed":
    case "image.progress":
      refreshImagesSoon();
      break;
    default:
      break;
  }
}

function onStreamState(streamState) {
  const labels = { connecting: "connecting…", open: "live", reconnecting: "reconnecting…", unauthorized: "token rejected", offline: "offline" };
  $("live").dataset.state = streamState;
  $("live-text").textContent = labels[streamState] ?? streamState;
  // Whatever happened while we were not connected, the lists are read again.
  if (streamState === "open") loadAll();
  if (streamState === "unauthorized") askToken("The API rejected this token.");
}

function connect() {
  state.stream?.stop();
  if (!getToken()) {
    onStreamState("offline");
    return;
  }
  state.stream = new EventStream({
    url: "/v1/events",
    token: getToken(),
    onEvent,
    onState: onStreamState,
    transport: localStorage.getItem("lq.sse") === "eventsource" ? "eventsource" : "fetch",
    eventTypes: EVENT_TYPES,
  });
  state.stream.start();
}

// ---- actions ------------------------------------------------------------------------------

function newIdempotencyKey() {
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function act(vm, action) {
  await guarded(async () => {
    const updated = await api("POST", `/v1/vms/${encodeURIComponent(vm.id)}/${action}`);
    if (updated?.id) state.vms.set(updated.id, updated);
    clearError();
    render();
  });
}

const start = (vm) => act(vm, "start");
const stop = (vm) => act(vm, "stop");

async function remove(vm) {
  if (!state.armed.has(vm.id)) {
    state.armed.add(vm.id);
    setTimeout(() => {
      state.armed.delete(vm.id);
      render();
    }, ARM_DELETE_MS);
    render();
    return;
  }
  state.armed.delete(vm.id);
  await guarded(async () => {
    const updated = await api("DELETE", `/v1/vms/${encodeURIComponent(vm.id)}`);
    state.vms.set(vm.id, updated?.id ? updated : { ...vm, state: "deleting" });
    clearError();
    render();
  });
}

function createBody(form) {
  const data = new FormData(form);
  const text = (name) => String(data.get(name) ?? "").trim();
  const body = {
    name: text("name"),
    image: text("image"),
    vcpus: Number(text("vcpus")),
    memory_mib: Number(text("memory_mib")),
    disk_gib: Number(text("disk_gib")),
  };
  const mode = text("network_mode");
  if (mode !== "none") {
    body.network = { mode };
    if ((mode === "bridge" || mode === "network") && text("network_source")) {
      body.network.source = text("network_source");
    }
  }
  const cloudInit = {};
  if (text("user") && text("user") !== "admin") cloudInit.user = text("user");
  const keys = text("ssh_key").split("\n").map((k) => k.trim()).filter(Boolean);
  if (keys.length) cloudInit.ssh_authorized_keys = keys;
  if (Object.keys(cloudInit).length) body.cloud_init = cloudInit;
  if (text("node")) body.node = text("node");
  return body;
}

async function create(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const vm = await api("POST", "/v1/vms", createBody(form), { "Idempotency-Key": newIdempotencyKey() });
    if (vm?.id) state.vms.set(vm.id, vm);
    clearError();
    form.reset();
    form.hidden = true;
    render();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// ---- token --------------------------------------------------------------------------------

function askToken(message = "") {
  const dialog = $("token-dialog");
  $("token-error").textContent = message;
  $("token-error").hidden = !message;
  $("token-input").value = getToken();
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function saveToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  setToken(token);
  $("token-dialog").close();
  clearError();
  connect();
}

// ---- wiring -------------------------------------------------------------------------------

function wire() {
  $("token-button").addEventListener("click", () => askToken());
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", () => {
    setToken("");
    state.stream?.stop();
    state.vms.clear();
    onStreamState("offline");
    render();
    $("token-input").value = "";
  });
  $("error-close").addEventListener("click", clearError);
  $("new-vm").addEventListener("click", () => {
    const form = $("create-form");
    form.hidden = !form.hidden;
    if (!form.hidden) form.querySelector("input[name=name]").focus();
  });
  $("create-cancel").addEventListener("click", () => {
    $("create-form").hidden = true;
  });
  $("create-form").addEventListener("submit", create);
  const mode = document.querySelector("#create-form select[name=network_mode]");
  mode.addEventListener("change", () => {
    $("network-source").hidden = !["bridge", "network"].includes(mode.value);
  });
  setInterval(() => {
    if (getToken() && !document.hidden && $("live").dataset.state === "open") guarded(loadNodes);
  }, NODE_POLL_MS);
}

wire();
render();
if (getToken()) connect();
else askToken();
