// <job-card job-id="..." [compact] [no-thumb] [no-view]>: one job with live progress and actions.
//
// The card reads its job from the live store and follows it: it subscribes in
// connectedCallback and, when the store reports its id changed, updates only the text nodes
// and attributes that differ. The DOM is built once per card, so a progress tick costs a few
// property writes and a thousand cards stay cheap.
//
//   compact   smaller layout for the sidebar and queue lists (no times row)
//   no-thumb  leave out the thumbnail (the results grid shows its own preview)
//   no-view   leave out "View" (pointless where the card already is the view)
//
// Root attributes for styling and tests: data-status (pending|processing|completed|failed|
// cancelled|missing); buttons carry data-action (view|download|edit|cancel|retry|front).

import { api, ApiError } from "../api.js";
import { closePanels, openPanel } from "../panels.js";
import { liveEta, liveProgress, store } from "../store.js";
import { ACTIVE, STATUS_LABEL, bytes, eta, hasPreview, seconds, time } from "../format.js";

/** Whether a newer attempt of this job exists (so it can no longer be retried). */
export function isSuperseded(jobId) {
  return Boolean(store.jobs.get(jobId)?.superseded);
}

/** Results we can put on another background: transparent PNG, WebP or a WebM clip. */
export function isEditable(job) {
  const format = job?.result?.format;
  return job?.status === "completed" && ["png", "webp", "webm"].includes(format)
    && !job.options?.background_color && !job.options?.background_image;
}

// Thumbnails are 64 CSS pixels (40 when compact): twice that stays sharp on HiDPI screens.
const THUMB_SIZE = 128;

const TEMPLATE = `
  <img class="job-card__thumb" alt="" loading="lazy" decoding="async">
  <div class="job-card__body">
    <div class="job-card__head">
      <span class="job-card__name"></span>
      <span class="status job-card__status"></span>
    </div>
    <div class="job-card__meta muted">
      <span class="job-card__size"></span>
      <span class="job-card__stage"></span>
      <span class="job-card__percent"></span>
    </div>
    <progress-bar></progress-bar>
    <div class="job-card__times muted">
      <span class="job-card__started"></span>
      <span class="job-card__eta"></span>
      <span class="job-card__finished"></span>
    </div>
    <p class="job-card__error" hidden></p>
    <p class="job-card__notice" role="alert" hidden></p>
    <div class="job-card__actions">
      <button type="button" data-action="view">View</button>
      <a class="button" data-action="download" download>Download</a>
      <button type="button" data-action="edit">Edit</button>
      <button type="button" data-action="front" title="Run this job next">Move to front</button>
      <button type="button" data-action="retry">Retry</button>
      <button type="button" class="danger" data-action="cancel">Cancel</button>
    </div>
  </div>`;

class JobCard extends HTMLElement {
  static observedAttributes = ["job-id"];

  connectedCallback() {
    if (!this._els) this._build();
    this._unsubscribe = store.on("change", ({ jobs }) => {
      // A retry made elsewhere (another tab, a batch card) must hide our Retry button.
      if (jobs.has(this.jobId)) this.render();
    });
    this.render();
  }

  disconnectedCallback() {
    this._unsubscribe?.();
    this._unsubscribe = null;
  }

  attributeChangedCallback(name, old, value) {
    if (old === value || !this._els) return;
    // Another job in the same card (the results grid reuses a tile for a retry): start over.
    this._shown = {};
    this._els.thumb.removeAttribute("src");
    this._notice("");
    this.render();
  }

  get jobId() {
    return this.getAttribute("job-id");
  }

  get job() {
    return store.jobs.get(this.jobId);
  }

  _build() {
    this.classList.add("job-card");
    this.innerHTML = TEMPLATE;
    const $ = (selector) => this.querySelector(selector);
    this._els = {
      thumb: $(".job-card__thumb"), name: $(".job-card__name"), status: $(".job-card__status"),
      size: $(".job-card__size"), stage: $(".job-card__stage"), percent: $(".job-card__percent"),
      bar: $("progress-bar"), started: $(".job-card__started"), eta: $(".job-card__eta"),
      finished: $(".job-card__finished"), error: $(".job-card__error"),
      notice: $(".job-card__notice"),
      buttons: Object.fromEntries([...this.querySelectorAll("[data-action]")]
        .map((el) => [el.dataset.action, el])),
    };
    this._shown = {};
    this._els.thumb.addEventListener("error", () => { this._els.thumb.hidden = true; });
    this.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action]");
      if (button && this.contains(button)) this._act(button.dataset.action, button, event);
    });
  }

  /** Redraw from the store. Cheap when nothing changed: every write is skipped if equal. */
  render() {
    const job = this.job;
    if (!job) return this._renderMissing();
    const els = this._els;
    const status = job.status;
    const active = ACTIVE.has(status);
    this._set("status", status, () => { this.dataset.status = status; });
    const paused = store.jobPaused(job);
    this._set("paused", paused, () => { this.dataset.paused = String(paused); });
    this._text(els.name, job.file_name);
    this._set("title", job.file_name, () => { els.name.title = job.file_name; });
    const label = paused ? "Paused" : STATUS_LABEL[status];
    this._text(els.status, job.attempt > 1 ? `${label} · try ${job.attempt}` : label);
    els.status.dataset.status = status;
    // Which model made the result: jobs on one server may have chosen different ones.
    const model = job.result?.model ? ` · ${job.result.model}` : "";
    this._text(els.size, bytes(job.file_size) + model);
    this._text(els.stage, status === "processing" ? job.stage || "Starting" : "");
    const live = liveProgress(job);
    this._text(els.percent, active ? `${Math.round(live)}%` : "");

    const value = status === "completed" ? 100 : Math.round(live * 10) / 10;
    this._set("bar", `${status}:${value}`, () => {
      els.bar.setAttribute("status", status);
      els.bar.setAttribute("value", String(value));
      els.bar.setAttribute("label", `${job.file_name}: ${STATUS_LABEL[status]}`);
    });

    // Formatting a time is slow (Intl); only do it when the times themselves change.
    this._set("times", `${status}|${job.queued_at}|${job.start_time}|${job.end_time}`, () => {
      this._text(els.started, job.start_time ? `Started ${time(job.start_time)}`
        : status === "pending" ? `Queued ${time(job.queued_at)}` : "");
      this._text(els.finished, job.end_time ? `${STATUS_LABEL[status]} ${time(job.end_time)}${this._took(job)}` : "");
    });
    this._text(els.eta, this._etaText(job));

    const message = status === "failed" ? job.error?.message || "Processing failed" : "";
    this._text(els.error, message);
    els.error.hidden = !message;

    if (!this.hasAttribute("no-thumb") && hasPreview(job)) {
      const src = api.thumbnailUrl(job.id, { size: THUMB_SIZE });
      this._set("thumb", src, () => { els.thumb.hidden = false; els.thumb.src = src; });
    }
    this._showActions(job);
  }

  _etaText(job) {
    if (job.status === "processing") return eta(liveEta(job));
    if (store.jobPaused(job)) return "Paused";
    // A pending job's estimate is its processing time; the wait in the queue comes on top.
    if (job.status === "pending" && job.estimated_time_remaining) {
      return `~${seconds(job.estimated_time_remaining)} once started`;
    }
    return "";
  }

  _took(job) {
    if (!job.start_time || !job.end_time) return "";
    const took = (Date.parse(job.end_time) - Date.parse(job.start_time)) / 1000;
    return ` (${seconds(took)})`;
  }

  _showActions(job) {
    const { buttons } = this._els;
    const status = job.status;
    const done = status === "completed";
    buttons.view.hidden = this.hasAttribute("no-view") || !done;
    buttons.download.hidden = !done;
    if (done) {
      const href = api.resultUrl(job.id);
      if (buttons.download.getAttribute("href") !== href) buttons.download.href = href;
    }
    buttons.edit.hidden = !isEditable(job);
    buttons.front.hidden = status !== "pending";
    buttons.cancel.hidden = !ACTIVE.has(status);
    buttons.retry.hidden = !(status === "failed" || status === "cancelled") || isSuperseded(job.id);
  }

  /** Not in the live store (an old job, or one deleted): fetch it once to find out which. */
  _renderMissing() {
    const els = this._els;
    this._set("status", "missing", () => {
      this.dataset.status = "missing";
      els.status.textContent = "";
      els.name.textContent = "Loading…";
      for (const el of Object.values(els.buttons)) el.hidden = true;
    });
    const id = this.jobId;
    if (!id || this._fetched === id) return;
    this._fetched = id;
    api.job(id).then((job) => {
      if (!store.jobs.has(job.id)) store.upsertJobs([job]); // the store then tells us
    }).catch(() => {
      if (this.jobId === id && !this.job) els.name.textContent = "Removed";
    });
  }

  async _act(action, button, event) {
    const id = this.jobId;
    if (action === "download") return; // a plain link: the browser downloads it
    if (action === "edit") return openPanel("editor", { jobId: id });
    if (action === "view") {
      // From inside a dialog (queue, history) the results grid is hidden behind it.
      if (this.closest("dialog")) closePanels();
      window.dispatchEvent(new CustomEvent("bgremover:view-job", { detail: { jobId: id } }));
      return;
    }
    event.preventDefault();
    button.disabled = true;
    try {
      // The store hears of every change through the live events; a retry's new attempt is
      // added now (unless the events were quicker) so the card reacts at once.
      if (action === "cancel") await api.cancelJob(id);
      else if (action === "front") await api.moveToFront(id);
      else if (action === "retry") {
        store.upsertJobs((await api.retryJob(id)).jobs.filter((job) => !store.jobs.has(job.id)));
      }
      this._notice("");
    } catch (error) {
      this._notice(error instanceof ApiError ? error.message : String(error));
    } finally {
      button.disabled = false;
    }
  }

  /** A failed action's message (e.g. "already finished"), under the job's own error. */
  _notice(message) {
    this._els.notice.textContent = message;
    this._els.notice.hidden = !message;
  }

  _text(el, value) {
    if (el.textContent !== value) el.textContent = value;
  }

  _set(key, value, apply) {
    if (this._shown[key] === value) return;
    this._shown[key] = value;
    apply();
  }
}

customElements.define("job-card", JobCard);
