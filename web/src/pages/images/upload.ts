// An upload from the browser: an upload record (POST /v1/images), then the file streamed with
// PUT /v1/images/{id}/file. XMLHttpRequest, because fetch reports no upload progress.
import { authHeaders, ProblemError, reportUnauthorized, sendJson, seg } from "../../api/client";
import type { ImageRecord } from "../../api/types";

export type UploadFormat = "" | "qcow2" | "raw" | "iso";

export function formatOf(fileName: string): UploadFormat {
  const lower = fileName.toLowerCase();
  if (lower.endsWith(".iso")) return "iso";
  if (lower.endsWith(".qcow2")) return "qcow2";
  if (lower.endsWith(".raw")) return "raw";
  return ""; // .img and others: the library detects the format
}

export function nameOf(fileName: string): string {
  return fileName.replace(/\.(qcow2|raw|img|iso)$/i, "") || fileName;
}

export interface UploadHandlers {
  onRecord: (record: ImageRecord) => void;
  onProgress: (sent: number, total: number) => void;
}

export interface Upload {
  done: Promise<ImageRecord>;
  cancel: () => void;
}

export function startUpload(file: File, name: string, format: UploadFormat, handlers: UploadHandlers): Upload {
  const xhr = new XMLHttpRequest();
  let cancelled = false;
  let recordId = "";
  const done = (async () => {
    const record = await sendJson<ImageRecord>("POST", "/v1/images", { name, ...(format ? { format } : {}) });
    recordId = record.id;
    handlers.onRecord(record);
    if (cancelled) throw new DOMException("upload cancelled", "AbortError");
    return await new Promise<ImageRecord>((resolve, reject) => {
      xhr.open("PUT", `/v1/images/${seg(record.id)}/file`);
      for (const [key, value] of Object.entries(authHeaders({ "Content-Type": "application/octet-stream" }))) {
        xhr.setRequestHeader(key, value);
      }
      xhr.upload.onprogress = (e) => handlers.onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(xhr.responseText) as Record<string, unknown>;
        } catch {
          body = { detail: xhr.statusText };
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body as unknown as ImageRecord);
        else {
          if (xhr.status === 401) reportUnauthorized();
          reject(new ProblemError(xhr.status, body));
        }
      };
      xhr.onerror = () => reject(new Error("the upload failed (connection lost)"));
      xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
      xhr.send(file);
    });
  })();
  const cancel = () => {
    cancelled = true;
    xhr.abort();
    // The aborted upload fails its record; remove it so the library shows no leftover.
    if (recordId) void sendJson("DELETE", `/v1/images/${seg(recordId)}`).catch(() => undefined);
  };
  return { done, cancel };
}
