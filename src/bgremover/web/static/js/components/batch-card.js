// <batch-card batch-id="..." [expanded]>: one batch with its aggregated progress, counts by
// status, ETA and duration, the batch actions (cancel, retry failed, download ZIP, add images
// to a manual batch) and, when expanded, its jobs as <job-card compact> rows, fetched a page
// at a time, and a link to the analytics view from the batch's start. It follows the store;
// `batch` may be set directly to seed it.

import { IMAGE_ACCEPT, api } from "../api.js";
import { openPanel } from "../panels.js";
import { liveEta, liveProgress, store } from "../store.js";
import {
  ACTIVE, COUNT_LABELS, STATUS_LABEL, batchName, dateTime, escapeHtml, eta, percent, seconds,
} from "../format.js";

const PAGE = 50;

let serial = 0;

class BatchCard extends HTMLElement {
  static observedAttributes = ["batch-id", "expanded"];

  constructor() {
    super();
    this._jobIds = []; // shown rows, in order
    this._total = 0; // jobs the server has for this batch
    this._loaded = false;
    this._unsubscribe = null;
  }

  get batchId() {
    return this.getAttribute("batch-id");
  }

  set batch(batch) {
    store.upsertBatches([batch]);
    this.setAttribute("batch-id", batch.id);
  }

  get expanded() {
    return this.hasAttribute("expanded");
  }

  set expanded(value) {
    this.toggleAttribute("expanded", Boolean(value));
  }

  connectedCallback() {
    if (!this.firstElementChild) this._build();
    this._unsubscribe = store.on("change", (changed) => this._onChange(changed));
    this._render();
    this._renderJobs();
    if (this.expanded && !this._loaded) this._loadJobs();
  }

  disconnectedCallback() {
    this._unsubscribe?.();
    this._unsubscribe = null;
  }

  attributeChangedCallback(name, old, value) {
    if (!this.firstElementChild || old === value) return;
    if (name === "batch-id") {
      this._jobIds = [];
      this._loaded = false;
      this._fetching = false;
      this._render();
    }
    // Expanding shows the rows, and loads them the first time.
    this._renderJobs();
    if (this.expanded && !this._loaded) this._loadJobs();
  }

  _build() {
    const id = `batch-card-${++serial}`;
    this.classList.add("batch-card");
    this.innerHTML = `
      <div class="batch-card__head">
        <button type="button" class="batch-card__expand" data-action="expand" aria-expanded="false"
          aria-controls="${id}-jobs" aria-label="Show jobs"><span aria-hidden="true">▸</span></button>
        <div class="batch-card__title">
          <strong class="batch-card__name"></strong>
          <span class="status"></span>
          <span class="batch-card__manual muted" hidden>manual</span>
        </div>
        <span class="batch-card__percent"></span>
      </div>
      <progress-bar></progress-bar>
      <div class="batch-card__meta muted">
        <span class="batch-card__counts"></span>
        <span class="batch-card__eta"></span>
        <span class="batch-card__duration"></span>
        <time class="batch-card__created"></time>
      </div>
      <div class="batch-card__actions">
        <button type="button" data-action="pause-batch" aria-pressed="false">Pause</button>
        <button type="button" data-action="cancel-batch" class="danger">Cancel batch</button>
        <button type="button" data-action="retry-batch">Retry failed</button>
        <button type="button" data-action="zip">Download ZIP</button>
        <button type="button" data-action="analytics" title="Charts from this batch's start until now">Analytics</button>
        <label class="batch-card__add" hidden>
          <input type="file" accept="${IMAGE_ACCEPT}" multiple data-action="add-files" class="visually-hidden">
          <span class="button-like">Add images…</span>
        </label>
        <span class="batch-card__error" role="alert"></span>
      </div>
      <div class="batch-card__jobs" id="${id}-jobs" hidden>
        <div class="batch-card__list" role="list"></div>
        <p class="batch-card__empty muted" hidden>No jobs in this batch yet.</p>
        <button type="button" class="batch-card__more" data-action="more" hidden></button>
      </div>`;
    this.addEventListener("click", (event) => this._onClick(event));
    this.addEventListener("change", (event) => {
      if (event.target.matches('[data-action="add-files"]')) this._addFiles(event.target);
    });
  }

  _onChange(changed) {
    const id = this.batchId;
    if (changed.batches.has(id)) this._render();
    if (!this.expanded || !this._loaded || !changed.jobs.size) return;
    // New attempts (retries) and jobs added to a manual batch join; deleted ones leave.
    let dirty = false;
    for (const jobId of changed.jobs) {
      const job = store.jobs.get(jobId);
      const index = this._jobIds.indexOf(jobId);
      if (!job) {
        if (index >= 0) {
          this._jobIds.splice(index, 1);
          this._total = Math.max(0, this._total - 1);
          dirty = true;
        }
      } else if (job.batch_id === id && index < 0) {
        const replaced = job.retried_from ? this._jobIds.indexOf(job.retried_from) : -1;
        if (replaced >= 0) {
          this._jobIds[replaced] = jobId;
          dirty = true;
        } else if (this._isNew(job)) {
          this._jobIds.unshift(jobId);
          // A retry of a row not loaded yet replaces that row: the batch did not grow.
          if (!job.retried_from) this._total += 1;
          dirty = true;
        }
        // Otherwise it is an older job on a page not loaded yet: "Show more" brings it.
      }
    }
    if (dirty) this._renderJobs();
  }

  /** Newer than every row shown (rows are newest first), so it belongs on top. */
  _isNew(job) {
    const newest = store.jobs.get(this._jobIds[0]);
    return !newest || job.created_at > newest.created_at;
  }

  _render() {
    const batch = store.batches.get(this.batchId);
    this.querySelector(".batch-card__actions").hidden = !batch;
    if (!batch) {
      if (this.batchId && !this._fetching) this._fetchBatch();
      this.dataset.status = "pending";
      this.querySelector(".batch-card__name").textContent = "Loading…";
      return;
    }
    const { counts } = batch;
    const empty = counts.total === 0; // a manual batch nothing was added to yet
    const active = ACTIVE.has(batch.status) && !empty;
    const waits = batch.eta_reason === "paused"; // pending jobs held by a pause
    this.dataset.status = batch.status;
    this.dataset.paused = String(Boolean(batch.paused) && ACTIVE.has(batch.status));
    this.querySelector(".batch-card__name").textContent = batchName(batch);
    const status = this.querySelector(".status");
    status.dataset.status = batch.status;
    status.textContent = empty ? "Empty"
      : this.dataset.paused === "true" ? "Paused" : STATUS_LABEL[batch.status] || batch.status;
    this.querySelector(".batch-card__manual").hidden = !batch.manual;
    const live = liveProgress(batch);
    this.querySelector(".batch-card__percent").textContent = percent(live);
    const bar = this.querySelector("progress-bar");
    bar.setAttribute("value", String(Math.round(live * 10) / 10));
    bar.setAttribute("status", batch.status);
    bar.setAttribute("label", `${batchName(batch)}: ${percent(live)}`);

    const parts = COUNT_LABELS.filter(([key]) => counts[key])
      .map(([key, label]) => `<span class="count" data-status="${key}">${counts[key]} ${label}</span>`);
    this.querySelector(".batch-card__counts").innerHTML =
      `<span class="count">${counts.total} ${counts.total === 1 ? "image" : "images"}</span>${parts.join("")}`;
    this.querySelector(".batch-card__eta").textContent = !active ? ""
      : waits ? "Paused" : eta(liveEta(batch));
    this.querySelector(".batch-card__duration").textContent =
      batch.duration ? `${active ? "running" : "took"} ${seconds(batch.duration)}` : "";
    const created = this.querySelector(".batch-card__created");
    created.dateTime = batch.created_at;
    created.textContent = dateTime(batch.created_at);

    const pause = this.querySelector('[data-action="pause-batch"]');
    pause.hidden = !ACTIVE.has(batch.status);
    pause.textContent = batch.paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(Boolean(batch.paused)));
    pause.title = batch.paused ? "Start this batch's jobs again"
      : "Start none of this batch's jobs until resumed; running ones finish";
    const cancel = this.querySelector('[data-action="cancel-batch"]');
    cancel.hidden = !active;
    const retry = this.querySelector('[data-action="retry-batch"]');
    const retryable = counts.failed + counts.cancelled;
    retry.hidden = retryable === 0;
    retry.textContent = counts.failed ? `Retry failed (${retryable})` : `Retry cancelled (${retryable})`;
    const zip = this.querySelector('[data-action="zip"]');
    zip.disabled = counts.completed === 0;
    zip.title = counts.completed ? `ZIP of ${counts.completed} results` : "No results yet";
    this.querySelector(".batch-card__add").hidden = !batch.manual;
  }

  async _fetchBatch() {
    this._fetching = true;
    try {
      store.upsertBatches([await api.batch(this.batchId)]);
    } catch (error) {
      this.querySelector(".batch-card__name").textContent = "Batch not found";
      this.dataset.status = "failed";
    }
  }

  async _onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.contains(button)) return;
    // A <job-card> inside handles its own buttons.
    if (button.closest("job-card")) return;
    const action = button.dataset.action;
    if (action === "expand") this.expanded = !this.expanded;
    else if (action === "more") this._loadJobs(true);
    else if (action === "zip") this._download();
    else if (action === "analytics") {
      const since = store.batches.get(this.batchId)?.created_at;
      openPanel("analytics", { since });
    }
    else if (action === "cancel-batch") this._act(button, () => api.cancelBatch(this.batchId));
    else if (action === "pause-batch") {
      this._act(button, async () => {
        const paused = store.batches.get(this.batchId)?.paused;
        const batch = await (paused ? api.resumeBatch(this.batchId) : api.pauseBatch(this.batchId));
        store.upsertBatches([batch]);
      });
    }
    else if (action === "retry-batch") {
      this._act(button, async () => {
        const result = await api.retryBatch(this.batchId);
        store.upsertJobs(result.jobs);
        if (this.expanded) await this._loadJobs(); // the new attempts, in the server's order
      });
    }
  }

  async _act(button, call) {
    const error = this.querySelector(".batch-card__error");
    error.textContent = "";
    button.disabled = true;
    try {
      await call();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
      this._render();
    }
  }

  _download() {
    const link = document.createElement("a");
    link.href = api.archiveUrl(this.batchId);
    link.download = "";
    document.body.append(link);
    link.click();
    link.remove();
  }

  async _addFiles(input) {
    const files = [...input.files];
    input.value = "";
    if (!files.length) return;
    const error = this.querySelector(".batch-card__error");
    error.textContent = "";
    try {
      const result = await api.upload(files, { batch_id: this.batchId });
      store.upsertBatches([result.batch]);
      store.upsertJobs(result.jobs);
      if (result.rejected?.length) {
        error.textContent = result.rejected.map((r) => `${r.file_name}: ${r.message}`).join("; ");
      }
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async _loadJobs(more = false) {
    if (this._loading) return;
    this._loading = true;
    const list = this.querySelector(".batch-card__list");
    const button = this.querySelector(".batch-card__more");
    if (!more) {
      this._jobIds = [];
      this._loaded = false;
    }
    button.disabled = true;
    this.setAttribute("aria-busy", "true");
    try {
      const page = await api.jobs({ batch_id: this.batchId, limit: PAGE, offset: this._jobIds.length });
      store.upsertJobs(page.items);
      const ids = page.items.map((job) => job.id); // newest first, like the API
      this._jobIds = more ? [...this._jobIds, ...ids.filter((id) => !this._jobIds.includes(id))] : ids;
      this._total = page.total;
      this._loaded = true;
    } catch (err) {
      this.querySelector(".batch-card__error").textContent = err.message;
    } finally {
      this._loading = false;
      button.disabled = false;
      this.removeAttribute("aria-busy");
      if (list.isConnected) this._renderJobs();
    }
  }

  _renderJobs() {
    const expanded = this.expanded;
    const toggle = this.querySelector('[data-action="expand"]');
    toggle.setAttribute("aria-expanded", String(expanded));
    toggle.setAttribute("aria-label", expanded ? "Hide jobs" : "Show jobs");
    const container = this.querySelector(".batch-card__jobs");
    container.hidden = !expanded;
    if (!expanded) return;
    const list = this.querySelector(".batch-card__list");
    const existing = new Map([...list.children].map((el) => [el.getAttribute("job-id"), el]));
    const rows = this._jobIds.map((id) => {
      let card = existing.get(id);
      if (!card) {
        card = document.createElement("job-card");
        card.setAttribute("job-id", id);
        card.setAttribute("compact", "");
        card.setAttribute("role", "listitem");
      }
      return card;
    });
    list.replaceChildren(...rows);
    this.querySelector(".batch-card__empty").hidden = !this._loaded || rows.length > 0;
    const left = this._total - this._jobIds.length;
    const more = this.querySelector(".batch-card__more");
    more.hidden = left <= 0;
    more.textContent = `Show ${Math.min(left, PAGE)} more (${left} not shown)`;
  }
}

customElements.define("batch-card", BatchCard);
