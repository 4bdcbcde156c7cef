// Notification preferences, the notification history and browser (OS) notifications.
//
// Everything here is kept in localStorage so it survives reloads and is shared by every
// tab of the app; <notification-center> is the only UI on top of it.

const SETTINGS_KEY = "bgremover.notifications.settings";
const HISTORY_KEY = "bgremover.notifications.history";
export const HISTORY_LIMIT = 200;

export const KINDS = ["success", "error", "warning", "info"];

/** The events a browser notification can be shown for, with their labels. */
export const BROWSER_EVENTS = {
  job_failure: "A job fails",
  batch_complete: "A batch finishes",
  session_complete: "A session completes",
};

const DEFAULT_SETTINGS = {
  toast: { success: true, error: true, warning: true, info: true },
  browser: { job_failure: true, batch_complete: true, session_complete: true },
  // Off by default: with it on, a visible tab shows toasts only.
  browserOnlyWhenHidden: false,
};

function readJson(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

export function loadSettings() {
  const saved = readJson(SETTINGS_KEY, {});
  return {
    toast: { ...DEFAULT_SETTINGS.toast, ...(saved.toast || {}) },
    browser: { ...DEFAULT_SETTINGS.browser, ...(saved.browser || {}) },
    browserOnlyWhenHidden: saved.browserOnlyWhenHidden ?? DEFAULT_SETTINGS.browserOnlyWhenHidden,
  };
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

/** Which browser-notification event a server notification is, or null for none. */
export function browserEventOf(notification) {
  const title = notification.title || "";
  if (notification.job_id && notification.kind === "error") return "job_failure";
  if (title.startsWith("Batch finished")) return "batch_complete";
  if (title.startsWith("Session complete")) return "session_complete";
  return null;
}

// ---- Browser notifications -------------------------------------------------------------

export function browserSupport() {
  if (!("Notification" in window)) return "unsupported";
  if (!window.isSecureContext) return "insecure";
  return Notification.permission; // "default" | "granted" | "denied"
}

/** Ask for permission; call only from a user gesture (a click). Resolves to the new state. */
export async function requestBrowserPermission() {
  if (browserSupport() !== "default") return browserSupport();
  try {
    return await Notification.requestPermission();
  } catch {
    return browserSupport();
  }
}

/** Show an OS notification when allowed and wanted; returns it (or null). */
export function showBrowserNotification(notification, settings, onClick) {
  const event = browserEventOf(notification);
  if (!event || !settings.browser[event]) return null;
  if (browserSupport() !== "granted") return null;
  if (settings.browserOnlyWhenHidden && document.visibilityState === "visible") return null;
  const ids = notification.job_id || notification.batch_id || notification.session_id || "";
  try {
    // The tag lets the OS fold the same notice coming from several open tabs into one.
    const shown = new Notification(notification.title, {
      body: notification.body || "",
      tag: `bgremover:${event}:${ids}`,
    });
    shown.onclick = () => {
      window.focus();
      shown.close();
      onClick?.(notification);
    };
    return shown;
  } catch {
    return null; // e.g. Android Chrome allows only service-worker notifications
  }
}

// ---- History ---------------------------------------------------------------------------

/** A bounded, newest-first list of past notifications with read flags, in localStorage. */
export class NotificationHistory {
  constructor() {
    this.items = this._load();
  }

  _load() {
    const items = readJson(HISTORY_KEY, []);
    return Array.isArray(items) ? items : [];
  }

  /** Re-read what another tab may have written. */
  reload() {
    this.items = this._load();
  }

  _save() {
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(this.items));
    } catch {
      // Storage full or unavailable: keep the in-memory list.
    }
  }

  /** Add a notification; false when another tab already recorded this very event. */
  add(notification, key) {
    this.reload();
    if (key && this.items.some((item) => item.key === key)) return false;
    this.items.unshift({
      key: key || `local:${Date.now()}:${Math.random().toString(36).slice(2)}`,
      at: new Date().toISOString(),
      read: false,
      ...pick(notification),
    });
    this.items.length = Math.min(this.items.length, HISTORY_LIMIT);
    this._save();
    return true;
  }

  get unread() {
    return this.items.filter((item) => !item.read).length;
  }

  markAllRead() {
    this.reload();
    if (!this.unread) return;
    for (const item of this.items) item.read = true;
    this._save();
  }

  clear() {
    this.items = [];
    this._save();
  }

  static get storageKey() {
    return HISTORY_KEY;
  }
}

function pick(n) {
  const out = { kind: KINDS.includes(n.kind) ? n.kind : "info", title: n.title || "", body: n.body || "" };
  for (const key of ["job_id", "batch_id", "session_id"]) if (n[key]) out[key] = n[key];
  return out;
}
