// The REST API: one function per endpoint, JSON in and out, errors as ApiError.
// The access token (only needed off loopback) is kept in localStorage and sent with
// every request; the token dialog also logs in (an HttpOnly login cookie), and URLs for
// <img>, downloads and the event stream carry it as ?token= too (accepted only there).
// Every request carries X-BGRemover-Request: a page on another site cannot add it, so the
// server knows a change comes from this page.

const TOKEN_KEY = "bgremover.token";

// What file pickers offer: every image, plus the extensions of phone photos (HEIC, AVIF)
// that some systems do not list under image/* (they have no registered media type there).
export const IMAGE_ACCEPT = "image/*,.heic,.heif,.hif,.avif,video/mp4,video/quicktime,video/webm,.mkv";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export function withToken(url) {
  const t = token();
  if (!t) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t);
}

function query(params = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, item);
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

async function request(method, path, { json, form, params } = {}) {
  const headers = { "X-BGRemover-Request": "1" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path + query(params), { method, headers, body });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    if (response.status === 401) window.dispatchEvent(new CustomEvent("bgremover:unauthorized"));
    throw new ApiError(response.status, error.code || "http_error",
      error.message || response.statusText, data);
  }
  return data;
}

export const api = {
  // Exchanges the stored token for a login cookie (random, expiring; see web/auth.py).
  login: () => request("POST", "/api/login"),
  config: () => request("GET", "/api/config"),
  stats: () => request("GET", "/api/stats"),
  // `since`: an ISO time or a span back from now ("24h", "7d"); the server's default is 24h.
  analytics: (since) => request("GET", "/api/analytics", { params: { since } }),

  upload(files, options = {}) {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name || "pasted.png");
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined && value !== null && value !== "") form.append(key, value);
    }
    return request("POST", "/api/batches", { form });
  },

  jobs: (params) => request("GET", "/api/jobs", { params }),
  job: (id) => request("GET", `/api/jobs/${id}`),
  cancelJob: (id) => request("POST", `/api/jobs/${id}/cancel`),
  retryJob: (id) => request("POST", `/api/jobs/${id}/retry`),
  deleteJob: (id) => request("DELETE", `/api/jobs/${id}`),
  deleteJobs: (status) => request("DELETE", "/api/jobs", { params: { status } }),
  setPriority: (id, priority) => request("POST", `/api/jobs/${id}/priority`, { json: { priority } }),
  moveToFront: (id) => request("POST", `/api/jobs/${id}/priority`, { json: { front: true } }),
  deriveJob: (id, form) => request("POST", `/api/jobs/${id}/derive`, { form }),
  resultUrl: (id, params = {}) => withToken(`/api/jobs/${id}/result${query(params)}`),
  originalUrl: (id) => withToken(`/api/jobs/${id}/original`),
  // A small WebP of the original or the result (longest side `size`), cached by the server:
  // what lists show instead of full photos (and the only way a browser shows a HEIC).
  thumbnailUrl: (id, { size = 256, of = "original" } = {}) =>
    withToken(`/api/jobs/${id}/thumbnail${query({ size, of })}`),

  batches: (params) => request("GET", "/api/batches", { params }),
  batch: (id) => request("GET", `/api/batches/${id}`),
  createManualBatch: (name) => request("POST", "/api/batches/manual", { json: { name } }),
  cancelBatch: (id) => request("POST", `/api/batches/${id}/cancel`),
  retryBatch: (id) => request("POST", `/api/batches/${id}/retry`),
  archiveUrl: (id) => withToken(`/api/batches/${id}/archive`),
  pauseBatch: (id) => request("POST", `/api/batches/${id}/pause`),
  resumeBatch: (id) => request("POST", `/api/batches/${id}/resume`),

  queue: () => request("GET", "/api/queue"),
  pauseQueue: (cancelRunning = false) =>
    request("POST", "/api/queue/pause", { params: { cancel_running: cancelRunning || null } }),
  resumeQueue: () => request("POST", "/api/queue/resume"),

  presets: () => request("GET", "/api/presets"),
  models: () => request("GET", "/api/models"),
  savePreset: (preset) => request("POST", "/api/presets", { json: preset }),
  deletePreset: (name) => request("DELETE", `/api/presets/${encodeURIComponent(name)}`),

  sessions: (params) => request("GET", "/api/sessions", { params }),
  session: (id) => request("GET", `/api/sessions/${id}`),
  eventsUrl: (after = null) => withToken(after == null ? "/api/events" : `/api/events?after=${after}`),
};
