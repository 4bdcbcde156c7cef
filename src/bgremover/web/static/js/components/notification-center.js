// <notification-center>: every server "notification" event becomes
//   - a toast (for store.config.notification_duration seconds, at most 5 at once, with a
//     countdown bar that pauses while hovered or focused, and View / Retry / Dismiss),
//   - an entry in the history panel (a <dialog>, opened by bgremover:open {panel:
//     "notifications"}) whose unread count goes out as bgremover:unread {count},
//   - a browser notification for job failures, finished batches and completed sessions,
//     once the user has allowed them from the panel (the permission prompt needs a click).
// What is shown is configurable per kind and per event in the panel's settings.

import { api } from "../api.js";
import { PanelDialog, closePanels, openPanel } from "../panels.js";
import { store } from "../store.js";
import { dateTime, escapeHtml, localNames } from "../format.js";
import {
  BROWSER_EVENTS, KINDS, NotificationHistory, browserSupport, loadSettings,
  requestBrowserPermission, saveSettings, showBrowserNotification,
} from "../notifications.js";

const MAX_TOASTS = 5;
const ICONS = { success: "✓", error: "!", warning: "⚠", info: "i" };
const KIND_LABELS = { success: "Success", error: "Errors", warning: "Warnings", info: "Information" };
const PERMISSION_TEXT = {
  unsupported: "This browser has no notifications; you will see them in the app only.",
  insecure: "Browser notifications need HTTPS or localhost; you will see them in the app only.",
  default: "Browser notifications are not enabled yet.",
  denied: "Browser notifications are blocked in this browser's site settings; in-app only.",
  granted: "Browser notifications are enabled.",
};

/** View a notification's subject: the job, else its batch or session in the queue. */
export function viewSubject(n) {
  if (n.job_id) {
    closePanels(); // the job is shown on the page, behind any open dialog
    window.dispatchEvent(new CustomEvent("bgremover:view-job", { detail: { jobId: n.job_id } }));
  }
  else if (n.batch_id) openPanel("jobs", { batchId: n.batch_id });
  else if (n.session_id) openPanel("jobs", { sessionId: n.session_id });
}

/** The retry a notification offers, or null: a failed job, or a batch with failures. */
function retryOf(n) {
  if (n.job_id && n.kind === "error") return () => api.retryJob(n.job_id);
  if (n.batch_id && !n.job_id) {
    const batch = store.batches.get(n.batch_id);
    const failed = batch ? batch.counts.failed : /\b[1-9]\d* failed\b/.test(n.body || "") ? 1 : 0;
    if (failed) return () => api.retryBatch(n.batch_id);
  }
  return null;
}

class NotificationCenter extends PanelDialog {
  static panel = "notifications";

  markup() {
    return `
      <div class="toasts" aria-live="polite" aria-relevant="additions" role="region"
        aria-label="Notifications"></div>
      <dialog class="notif-panel" aria-labelledby="notif-panel-title">
        <header class="dialog__header">
          <h2 id="notif-panel-title">Notifications</h2>
          <span class="muted notif-panel__count"></span>
          <button type="button" class="notif-panel__clear danger" data-action="clear">Clear</button>
          <button type="button" class="close" data-action="close" aria-label="Close">✕</button>
        </header>
        <div class="dialog__body">
          <details class="notif-settings">
            <summary>Settings</summary>
            <fieldset>
              <legend>Pop-ups in the app</legend>
              ${KINDS.map((kind) => `<label><input type="checkbox" data-setting="toast.${kind}">
                ${KIND_LABELS[kind]}</label>`).join("")}
            </fieldset>
            <fieldset>
              <legend>Browser notifications</legend>
              <p class="notif-permission"></p>
              <button type="button" class="primary" data-action="enable-browser">Enable browser notifications</button>
              ${Object.entries(BROWSER_EVENTS).map(([key, label]) => `<label>
                <input type="checkbox" data-setting="browser.${key}"> ${label}</label>`).join("")}
              <label><input type="checkbox" data-setting="browserOnlyWhenHidden">
                Only while this tab is in the background</label>
            </fieldset>
          </details>
          <ol class="notif-list" aria-label="Past notifications"></ol>
          <p class="notif-empty muted">No notifications yet.</p>
        </div>
      </dialog>`;
  }

  setUp() {
    this.settings = loadSettings();
    this.history = new NotificationHistory();
    this.toasts = this.querySelector(".toasts");
    this.list = this.querySelector(".notif-list");

    store.on("notification", (n) => this._receive(n));
    this.toasts.addEventListener("click", (event) => this._onToastClick(event));
    this.dialog.addEventListener("change", (event) => this._onSettingChange(event));
    this._watchDialogs();
    // Another tab changed the history or the settings.
    window.addEventListener("storage", (event) => {
      if (event.key === NotificationHistory.storageKey) {
        this.history.reload();
        if (this.dialog.open) this.history.markAllRead();
        this._publishUnread();
        if (this.dialog.open) this._renderPanel();
      } else if (event.key?.startsWith("bgremover.notifications")) {
        this.settings = loadSettings();
        this._renderSettings();
      }
    });
    // app.js listens for bgremover:unread after every module has run; tell it afterwards.
    setTimeout(() => this._publishUnread(), 0);
    store.on("config", () => this._publishUnread());
  }

  get duration() {
    const seconds = Number(store.config?.notification_duration);
    return (seconds > 0 ? seconds : 5) * 1000;
  }

  open() {
    this.show();
    this.history.markAllRead();
    this._publishUnread();
    this._renderPanel();
  }

  closed() {
    this._renderPanel();
  }

  _receive(server) {
    const n = localNames(server, {
      batch: store.batches.get(server.batch_id), session: store.sessions.get(server.session_id),
    });
    // store.lastSeq is this event's seq: it keys the entry so tabs do not record it twice.
    const key = store.lastSeq ? `${store.lastSeq}|${n.title}` : null;
    this.history.add(n, key);
    if (this.dialog.open) {
      this.history.markAllRead();
      this._renderPanel();
    }
    this._publishUnread();
    if (this.settings.toast[n.kind] ?? true) this._toast(n);
    showBrowserNotification(n, this.settings, viewSubject);
  }

  _publishUnread() {
    const count = this.history.unread;
    this.querySelector(".notif-panel__count").textContent = count ? `${count} unread` : "";
    window.dispatchEvent(new CustomEvent("bgremover:unread", { detail: { count } }));
  }

  // ---- Toasts --------------------------------------------------------------------------

  _toast(n) {
    const toast = document.createElement("div");
    toast.className = "toast";
    toast.dataset.kind = KINDS.includes(n.kind) ? n.kind : "info";
    const retry = retryOf(n);
    const canView = Boolean(n.job_id || n.batch_id || n.session_id);
    toast.innerHTML = `
      <span class="toast__icon" aria-hidden="true">${ICONS[toast.dataset.kind]}</span>
      <div class="toast__text">
        <strong class="toast__title">${escapeHtml(n.title)}</strong>
        ${n.body ? `<p class="toast__body">${escapeHtml(n.body)}</p>` : ""}
        <p class="toast__error" role="alert" hidden></p>
        ${canView || retry ? `<div class="toast__actions">
          ${canView ? '<button type="button" data-action="view">View</button>' : ""}
          ${retry ? '<button type="button" data-action="retry">Retry</button>' : ""}
        </div>` : ""}
      </div>
      <button type="button" class="toast__close" data-action="dismiss" aria-label="Dismiss">✕</button>
      <div class="toast__countdown" aria-hidden="true"></div>`;
    toast._notification = n;
    toast._retry = retry;
    this.toasts.append(toast);
    while (this.toasts.children.length > MAX_TOASTS) this._remove(this.toasts.firstElementChild);
    this._place();
    this._startTimer(toast, this.duration);
  }

  /** Follow modal dialogs as they open and close (see _place). */
  _watchDialogs() {
    this._modals = [];
    const isModal = (dialog) => {
      try {
        return dialog.matches(":modal");
      } catch {
        return true; // no :modal selector: every open dialog here is modal
      }
    };
    new MutationObserver((records) => {
      for (const { target } of records) {
        if (target.localName !== "dialog") continue;
        this._modals = this._modals.filter((dialog) => dialog !== target);
        if (target.open && isModal(target)) this._modals.push(target);
      }
      this._place();
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["open"] });
  }

  /** A modal dialog makes the rest of the page inert, so the stack lives in the topmost one
   *  while it is open (still position: fixed, so it stays in the corner), and here otherwise. */
  _place() {
    const modals = this._modals.filter((dialog) => dialog.isConnected && dialog.open);
    const host = modals[modals.length - 1] || this;
    if (this.toasts.parentElement !== host) host.append(this.toasts);
  }

  _startTimer(toast, total) {
    const bar = toast.querySelector(".toast__countdown");
    bar.style.animationDuration = `${total}ms`;
    let remaining = total;
    let started = performance.now();
    let timer = setTimeout(() => this._remove(toast), remaining);
    const pause = () => {
      if (timer === null) return;
      clearTimeout(timer);
      timer = null;
      remaining -= performance.now() - started;
      toast.classList.add("toast--paused");
    };
    const resume = () => {
      if (timer !== null || toast.matches(":hover, :focus-within")) return;
      started = performance.now();
      timer = setTimeout(() => this._remove(toast), Math.max(remaining, 1000));
      toast.classList.remove("toast--paused");
    };
    toast.addEventListener("pointerenter", pause);
    toast.addEventListener("focusin", pause);
    toast.addEventListener("pointerleave", () => setTimeout(resume));
    toast.addEventListener("focusout", () => setTimeout(resume));
    toast._stop = () => clearTimeout(timer);
  }

  _remove(toast) {
    if (!toast || !toast.isConnected) return;
    toast._stop?.();
    // Keep keyboard focus in the stack instead of dropping it on <body>.
    const hadFocus = toast.contains(document.activeElement);
    const next = toast.nextElementSibling || toast.previousElementSibling;
    toast.remove();
    if (hadFocus) next?.querySelector("button")?.focus();
  }

  async _onToastClick(event) {
    // The stack may sit inside someone's dialog (see _place); its clicks are ours alone.
    event.stopPropagation();
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const toast = button.closest(".toast");
    const n = toast._notification;
    if (button.dataset.action === "dismiss") this._remove(toast);
    else if (button.dataset.action === "view") {
      viewSubject(n);
      this._remove(toast);
    } else if (button.dataset.action === "retry" && toast._retry) {
      button.disabled = true;
      button.textContent = "Retrying…";
      try {
        await toast._retry();
        this._remove(toast);
      } catch (error) {
        const message = toast.querySelector(".toast__error");
        message.hidden = false;
        message.textContent = `Could not retry: ${error.message}`;
        button.textContent = "Retry";
        button.disabled = false;
      }
    }
  }

  // ---- History panel -------------------------------------------------------------------

  _renderPanel() {
    const items = this.history.items;
    this.querySelector(".notif-empty").hidden = items.length > 0;
    this.querySelector(".notif-panel__clear").disabled = items.length === 0;
    this.list.innerHTML = items.map((item, index) => `
      <li class="notif-item" data-kind="${escapeHtml(item.kind)}" data-read="${item.read}">
        <span class="toast__icon" aria-hidden="true">${ICONS[item.kind] || "i"}</span>
        <div class="notif-item__text">
          <strong>${escapeHtml(item.title)}</strong>
          ${item.body ? `<span class="muted">${escapeHtml(item.body)}</span>` : ""}
          <time datetime="${escapeHtml(item.at)}" class="muted">${escapeHtml(dateTime(item.at))}</time>
        </div>
        ${item.job_id || item.batch_id || item.session_id
          ? `<button type="button" data-action="view" data-index="${index}">View</button>` : ""}
      </li>`).join("");
    this._renderSettings();
  }

  _renderSettings() {
    for (const input of this.dialog.querySelectorAll("[data-setting]")) {
      const [group, name] = input.dataset.setting.split(".");
      input.checked = Boolean(name ? this.settings[group][name] : this.settings[group]);
    }
    const state = browserSupport();
    const text = this.querySelector(".notif-permission");
    text.textContent = PERMISSION_TEXT[state];
    text.dataset.state = state;
    this.querySelector('[data-action="enable-browser"]').hidden = state !== "default";
    for (const input of this.dialog.querySelectorAll('[data-setting^="browser"]')) {
      input.disabled = state !== "granted";
    }
  }

  async onAction(action, button) {
    if (action === "clear") {
      this.history.clear();
      this._publishUnread();
      this._renderPanel();
    } else if (action === "view") {
      const item = this.history.items[Number(button.dataset.index)];
      this.close();
      if (item) viewSubject(item);
    } else if (action === "enable-browser") {
      button.disabled = true;
      await requestBrowserPermission();
      button.disabled = false;
      this._renderSettings();
    }
  }

  _onSettingChange(event) {
    const input = event.target.closest("[data-setting]");
    if (!input) return;
    const [group, name] = input.dataset.setting.split(".");
    if (name) this.settings[group][name] = input.checked;
    else this.settings[group] = input.checked;
    saveSettings(this.settings);
  }
}

customElements.define("notification-center", NotificationCenter);
