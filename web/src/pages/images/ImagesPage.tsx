// The image library: states and live progress, upload (drag and drop), import by URL, catalog
// downloads, delete (refused while VMs use the image, naming them) and Retry of failed imports.
import { type DragEvent, type FormEvent, useRef, useState } from "react";
import { ProblemError, sendJson, seg } from "../../api/client";
import type { ImageRecord } from "../../api/types";
import { ConfirmDialog } from "../../components/Dialog";
import { Empty, Field, ProblemLine, ProgressBar, StateBadge } from "../../components/bits";
import { bytes, percent } from "../../lib/format";
import { Link } from "../../lib/router";
import { live, useLive } from "../../state/live";
import { formatOf, nameOf, startUpload, type UploadFormat } from "./upload";

const BUSY_STATES = ["queued", "downloading", "uploading", "verifying"];
const SHA256 = /^[0-9a-f]{64}$/;

interface UploadRow {
  key: number;
  fileName: string;
  sent: number;
  total: number;
  imageId: string;
  status: "uploading" | "done" | "failed" | "cancelled";
  error: unknown;
  cancel: () => void;
}

function isRemote(image: ImageRecord): boolean {
  const state = String(image.state);
  return state === "remote" || state === "available";
}

export function ImagesPage() {
  const snapshot = useLive();
  const [error, setError] = useState<unknown>(null);
  const [uploads, setUploads] = useState<UploadRow[]>([]);
  const [deleting, setDeleting] = useState<ImageRecord | null>(null);
  const [inUse, setInUse] = useState<{ image: string; vms: string[] } | null>(null);
  const images = [...snapshot.images.values()].sort((a, b) => a.name.localeCompare(b.name));
  const local = images.filter((i) => !isRemote(i));
  const catalog = images.filter(isRemote);
  const counter = useRef(0);

  const patchUpload = (key: number, patch: Partial<UploadRow>) =>
    setUploads((rows) => rows.map((row) => (row.key === key ? { ...row, ...patch } : row)));

  const upload = (file: File, name: string, format: UploadFormat) => {
    counter.current += 1;
    const key = counter.current;
    const handle = startUpload(file, name, format, {
      onRecord: (record) => {
        live.putImage(record);
        patchUpload(key, { imageId: record.id });
      },
      onProgress: (sent, total) => patchUpload(key, { sent, total }),
    });
    setUploads((rows) => [...rows, { key, fileName: file.name, sent: 0, total: file.size, imageId: "",
                                      status: "uploading", error: null, cancel: handle.cancel }]);
    handle.done.then((record) => {
      live.putImage(record);
      patchUpload(key, { status: "done", sent: file.size });
    }).catch((err: unknown) => {
      const cancelled = err instanceof DOMException && err.name === "AbortError";
      patchUpload(key, { status: cancelled ? "cancelled" : "failed", error: cancelled ? null : err });
    });
  };

  const remove = async (image: ImageRecord) => {
    setError(null);
    try {
      await sendJson("DELETE", `/v1/images/${seg(image.id)}`);
      live.refreshImage(image.id);
    } catch (err) {
      if (err instanceof ProblemError && err.code === "image_in_use" && Array.isArray(err.body.vms)) {
        setInUse({ image: image.name, vms: err.body.vms.map(String) });
      }
      setError(err);
    }
  };

  const importImage = async (body: Record<string, unknown>) => {
    setError(null);
    const record = await sendJson<ImageRecord>("POST", "/v1/images", body);
    live.putImage(record);
    return record;
  };

  const retry = async (image: ImageRecord) => {
    try {
      await sendJson("DELETE", `/v1/images/${seg(image.id)}`).catch(() => undefined);
      await importImage(image.catalog_id ? { catalog_id: image.catalog_id, ...(image.source_url ? { source_url: image.source_url } : {}) }
        : { source_url: image.source_url, name: image.name, ...(image.expected_sha256 ? { sha256: image.expected_sha256 } : {}),
            ...(image.format ? { format: image.format } : {}) });
      live.refreshImage(image.id);
    } catch (err) {
      setError(err);
    }
  };

  const vmName = (id: string) => snapshot.vms.get(id)?.name ?? id;

  return (
    <section className="page" aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      <div className="two-col">
        <UploadPanel onUpload={upload} uploads={uploads} onDismiss={(key) => setUploads((r) => r.filter((x) => x.key !== key))} />
        <ImportPanel onImport={importImage} />
      </div>
      <ProblemLine error={error} onDismiss={() => { setError(null); setInUse(null); }} />
      {inUse && (
        <p className="warning" role="status">{inUse.image} is used by:{" "}
          {inUse.vms.map((id, i) => <span key={id}>{i > 0 && ", "}<Link href={`/vms/${encodeURIComponent(vmName(id))}`}>{vmName(id)}</Link></span>)}.
          Delete those VMs first.</p>
      )}
      <h2>Library</h2>
      {snapshot.loaded && local.length === 0 && <Empty>No images yet: upload one above, import one by URL, or download one from the catalog below.</Empty>}
      <ul className="cards image-list" id="images">
        {local.map((image) => (
          <ImageCard key={image.id} image={image} usedBy={[...snapshot.vms.values()].filter((vm) => vm.image === image.id || vm.image === image.name).map((vm) => vm.name)}
                     onDelete={() => setDeleting(image)} onRetry={() => void retry(image)} />
        ))}
      </ul>
      {catalog.length > 0 && (
        <>
          <h2>Catalog</h2>
          <p className="muted">Known images not downloaded yet: download one now, or pick it in the wizard (it downloads on create).</p>
          <ul className="cards image-list" id="catalog">
            {catalog.map((image) => (
              <li key={image.id} className="card image-row" data-image-id={image.id} data-state={image.state}>
                <div className="image-head"><strong className="image-name">{image.name}</strong><StateBadge state={String(image.state)} label="remote" /></div>
                <p className="muted">{[image.os, image.version, image.architecture].filter(Boolean).join(" ")}{image.min_disk_gib ? ` · min disk ${image.min_disk_gib} GiB` : ""}</p>
                <div className="row-actions">
                  <button type="button" className="small" aria-label={`Download ${image.name}`}
                          onClick={() => void importImage({ catalog_id: image.catalog_id || image.id }).catch(setError)}>Download</button>
                </div>
              </li>
            ))}
          </ul>
        </>
      )}
      <ConfirmDialog open={deleting !== null} title={`Delete image ${deleting?.name ?? ""}?`} confirmLabel="Delete image" danger
                     onClose={() => setDeleting(null)} onConfirm={() => { if (deleting) void remove(deleting); setDeleting(null); }}>
        <p>The image file is removed from the library{deleting?.catalog_id ? " (the catalog entry stays, to download again)" : ""}.</p>
      </ConfirmDialog>
    </section>
  );
}

function ImageCard({ image, usedBy, onDelete, onRetry }: { image: ImageRecord; usedBy: string[]; onDelete: () => void; onRetry: () => void }) {
  const state = String(image.state);
  const busy = BUSY_STATES.includes(state);
  const size = image.virtual_size ?? image.file_size;
  return (
    <li className="card image-row" data-image-id={image.id} data-image-name={image.name} data-state={state}>
      <div className="image-head">
        <strong className="image-name">{image.name}</strong>
        <StateBadge state={state} />
      </div>
      <p className="muted">
        {[image.os, image.version].filter(Boolean).join(" ") || "—"} · {image.format || "format detected on import"}
        {size ? ` · ${bytes(size)}` : ""}{image.file_size && image.virtual_size ? ` (file ${bytes(image.file_size)})` : ""}
      </p>
      {busy && (
        <div aria-live="polite">
          <ProgressBar done={image.bytes_done ?? 0} total={image.bytes_total} label={`${state} ${image.name}`} />
          <span className="muted">{bytes(image.bytes_done ?? 0)}{image.bytes_total ? ` of ${bytes(image.bytes_total)}` : ""}</span>
        </div>
      )}
      {state === "error" && (
        <p className="problem image-error" role="alert">
          {image.error || "The import failed."}
        </p>
      )}
      {image.sha256 && <p className="sha"><span className="muted">sha256 </span><code>{image.sha256}</code></p>}
      {image.source_url && <p className="muted source">from <code>{image.source_url}</code></p>}
      {usedBy.length > 0 && <p className="muted">Used by {usedBy.join(", ")}</p>}
      <div className="row-actions">
        {state === "active" && (
          <Link href={`/vms/new?image=${encodeURIComponent(image.id)}`} className="button small"
                aria-label={`Create a VM from ${image.name}`}>Create VM</Link>
        )}
        {state === "error" && (image.source_url || image.catalog_id) && (
          <button type="button" className="small" aria-label={`Retry ${image.name}`} onClick={onRetry}>Retry</button>
        )}
        <button type="button" className="small danger" aria-label={`Delete image ${image.name}`} onClick={onDelete}>
          {busy ? "Cancel" : "Delete"}
        </button>
      </div>
    </li>
  );
}

function UploadPanel({ onUpload, uploads, onDismiss }: {
  onUpload: (file: File, name: string, format: UploadFormat) => void; uploads: UploadRow[]; onDismiss: (key: number) => void;
}) {
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const take = (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) onUpload(file, nameOf(file.name), formatOf(file.name));
  };
  const drop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    take(event.dataTransfer.files);
  };
  return (
    <section className="card" aria-labelledby="upload-title">
      <h2 id="upload-title">Upload</h2>
      <div className={`drop-zone${dragging ? " dragging" : ""}`} id="drop-zone"
           onDragOver={(e) => { e.preventDefault(); setDragging(true); }} onDragLeave={() => setDragging(false)} onDrop={drop}>
        <p>Drop a qcow2, raw or ISO file here, or</p>
        <button type="button" onClick={() => input.current?.click()}>Choose a file…</button>
        <input ref={input} type="file" id="upload-input" className="visually-hidden" aria-label="Image file to upload"
               accept=".qcow2,.img,.raw,.iso" multiple onChange={(e) => { take(e.target.files); e.target.value = ""; }} />
      </div>
      <ul className="uploads" aria-live="polite">
        {uploads.map((u) => (
          <li key={u.key} className="upload" data-status={u.status} data-file={u.fileName}>
            <span className="upload-name">{u.fileName}</span>
            <ProgressBar done={u.sent} total={u.total} label={`Upload of ${u.fileName}`} />
            <span className="muted">{u.status === "uploading" ? `${bytes(u.sent)} of ${bytes(u.total)}`
              : u.status === "done" ? "uploaded — the library checks it now" : u.status}</span>
            {u.error ? <ProblemLine error={u.error} /> : null}
            {u.status === "uploading"
              ? <button type="button" className="small" aria-label={`Cancel upload of ${u.fileName}`} onClick={u.cancel}>Cancel</button>
              : <button type="button" className="small" aria-label={`Dismiss ${u.fileName}`} onClick={() => onDismiss(u.key)}>Dismiss</button>}
            <span className="visually-hidden">{percent(u.sent, u.total)} %</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function ImportPanel({ onImport }: { onImport: (body: Record<string, unknown>) => Promise<ImageRecord> }) {
  const [url, setUrl] = useState("");
  const [name, setName] = useState("");
  const [sha, setSha] = useState("");
  const [format, setFormat] = useState<UploadFormat>("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<unknown>(null);
  const [started, setStarted] = useState("");
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const found: Record<string, string> = {};
    try {
      const parsed = new URL(url.trim());
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") found.url = "An http:// or https:// URL.";
    } catch {
      found.url = "A full URL, e.g. https://cloud.debian.org/…/debian-12-generic-amd64.qcow2";
    }
    const checksum = sha.trim().toLowerCase();
    if (checksum && !SHA256.test(checksum)) found.sha = "64 hexadecimal characters (a SHA-256), or leave empty.";
    setErrors(found);
    if (Object.keys(found).length) return;
    setProblem(null);
    try {
      const record = await onImport({ source_url: url.trim(), ...(name.trim() ? { name: name.trim() } : {}),
                                      ...(checksum ? { sha256: checksum } : {}), ...(format ? { format } : {}) });
      setStarted(`Importing ${record.name}…`);
      setUrl("");
      setName("");
      setSha("");
    } catch (err) {
      setProblem(err);
    }
  };
  return (
    <section className="card" aria-labelledby="import-title">
      <h2 id="import-title">Import by URL</h2>
      <form className="stack" onSubmit={(e) => void submit(e)} noValidate>
        <Field label="URL" htmlFor="import-url" error={errors.url}>
          <input id="import-url" type="url" value={url} onChange={(e) => setUrl(e.target.value)} spellCheck={false} />
        </Field>
        <div className="grid-fields">
          <Field label="Name (optional)" htmlFor="import-name"><input id="import-name" value={name} onChange={(e) => setName(e.target.value)} /></Field>
          <Field label="Format" htmlFor="import-format">
            <select id="import-format" value={format} onChange={(e) => setFormat(e.target.value as UploadFormat)}>
              <option value="">detect</option><option value="qcow2">qcow2</option><option value="raw">raw</option><option value="iso">ISO</option>
            </select>
          </Field>
        </div>
        <Field label="SHA-256 (optional)" htmlFor="import-sha" error={errors.sha} hint="The import fails if the file's checksum differs.">
          <input id="import-sha" value={sha} onChange={(e) => setSha(e.target.value)} spellCheck={false} />
        </Field>
        <ProblemLine error={problem} onDismiss={() => setProblem(null)} />
        <div><button type="submit" className="primary" id="import-submit">Import</button></div>
        {started && <p role="status" className="muted">{started}</p>}
      </form>
    </section>
  );
}
