// Small formatting helpers shared by the components.

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

export function seconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  if (s < 1) return "<1 s";
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function eta(s) {
  const text = seconds(s);
  return text ? `~${text} left` : "";
}

// Every time on the page is formatted here, from timestamps, in the browser's locale and
// time zone (12- or 24-hour as the locale has it). Building an Intl formatter is costly; with
// 1,000 cards it dominated rendering, so each is made once.
const TIME = new Intl.DateTimeFormat([], { hour: "numeric", minute: "2-digit", second: "2-digit" });
const SHORT_TIME = new Intl.DateTimeFormat([], { hour: "numeric", minute: "2-digit" });
const DATE_TIME = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "short" });
const SHORT_DATE_TIME = new Intl.DateTimeFormat([], {
  month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
});

export function time(iso) {
  return iso ? TIME.format(new Date(iso)) : "";
}

export function dateTime(iso) {
  return iso ? DATE_TIME.format(new Date(iso)) : "";
}

// Automatic names are made by the server ("3 images · 19:14", "Session · Nov 29, 19:14") in
// its clock and 24-hour style; the page shows their time from the timestamp instead, like
// every other time. Names people typed are shown as typed.
const AUTO_BATCH = /^(\d+ images?) · \d{2}:\d{2}$/;
const AUTO_SESSION = /^Session · [A-Z][a-z]{2} \d{2}, \d{2}:\d{2}$/;

export function batchName(batch) {
  const match = !batch.manual && AUTO_BATCH.exec(batch.name);
  return match ? `${match[1]} · ${SHORT_TIME.format(new Date(batch.created_at))}` : batch.name;
}

export function sessionName(session) {
  return AUTO_SESSION.test(session.name)
    ? `Session · ${SHORT_DATE_TIME.format(new Date(session.started_at))}` : session.name;
}

/** A server notification with the batch and session names in it shown as above. */
export function localNames(notification, { batch, session }) {
  let { title, body } = notification;
  for (const [thing, name] of [[batch, batchName], [session, sessionName]]) {
    if (!thing) continue;
    title = title?.replaceAll(thing.name, name(thing));
    body = body?.replaceAll(thing.name, name(thing));
  }
  return { ...notification, title, body };
}

export function percent(p) {
  return `${Math.round(p || 0)}%`;
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

export const STATUS_LABEL = {
  pending: "Queued",
  processing: "Processing",
  completed: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

/** The statuses of a job, batch or session still under way; every other status has ended. */
export const ACTIVE = new Set(["pending", "processing"]);
/** The statuses a job ends in. */
export const ENDED = new Set(["completed", "failed", "cancelled"]);

/** Status counts in the order and words batch and session summaries use. */
export const COUNT_LABELS = [
  ["completed", "done"],
  ["processing", "running"],
  ["pending", "queued"],
  ["failed", "failed"],
  ["cancelled", "cancelled"],
];

/** The ARIA state shared by <progress-bar> and <circular-progress>; returns the clamped value. */
export function setProgressAria(element) {
  const value = Math.max(0, Math.min(100, Number(element.getAttribute("value")) || 0));
  element.setAttribute("aria-valuenow", String(Math.round(value)));
  element.setAttribute("aria-valuetext", `${Math.round(value)}%`);
  const label = element.getAttribute("label");
  if (label) element.setAttribute("aria-label", label);
  return value;
}

// Failures that mean the upload is not a picture the server can read: no thumbnail exists,
// so the UI does not ask for one (the server would answer 422 and the browser log an error).
// A job with a background image may have failed on the background: its photo still shows.
const UNREADABLE = new Set([
  "corrupt_image", "empty_file", "file_too_large", "image_too_large", "not_an_image",
  "unreadable", "unsupported_format",
]);

export function hasPreview(job) {
  if (job.options?.background_image) return true;
  return !(job.status === "failed" && UNREADABLE.has(job.error?.code));
}
