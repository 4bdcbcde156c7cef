// <job-queue-modal>: the full job queue in a <dialog>, opened by bgremover:open {panel: "jobs",
// batchId?, sessionId?} and closed by bgremover:close, its close button or Esc.
//
// Tabs: "Batches" (batch cards, a page at a time) and "Sessions" (<session-view>).
// Filters: status, date from/to, one batch, a file-name search and "Show completed". With
// no job-level filter the tab lists batches; a search, a date range or a chosen batch with
// other filters lists the matching jobs instead; a chosen batch alone shows that batch open.
// "New batch" creates an empty manual batch to add images to.

import { api } from "../api.js";
import { PanelDialog } from "../panels.js";
import { store } from "../store.js";
import { STATUS_LABEL, batchName, dateTime, escapeHtml } from "../format.js";

const BATCH_PAGE = 20;
const JOB_PAGE = 50;
const SHOW_COMPLETED_KEY = "bgremover.queue.showCompleted";
const NOT_COMPLETED = ["pending", "processing", "failed", "cancelled"];

/** Prev / "Page x of y" / Next; buttons carry data-page="prev|next". */
export function pagerMarkup(label) {
  return `<nav class="pager" aria-label="${escapeHtml(label)}">
      <button type="button" data-page="prev">‹ Previous</button>
      <span class="pager__info"></span>
      <button type="button" data-page="next">Next ›</button>
    </nav>`;
}

export function updatePager(nav, { offset, limit, total }) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const page = Math.min(pages, Math.floor(offset / limit) + 1);
  nav.querySelector(".pager__info").textContent = `Page ${page} of ${pages}`;
  nav.querySelector('[data-page="prev"]').disabled = offset <= 0;
  nav.querySelector('[data-page="next"]').disabled = offset + limit >= total;
}

/** Local midnight of a yyyy-mm-dd date input, plus `days`, as an ISO instant. */
export function dayStart(value, days = 0) {
  if (!value) return undefined;
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

class JobQueueModal extends PanelDialog {
  static panel = "jobs";

  markup() {
    return `
      <dialog class="queue-modal" aria-labelledby="queue-modal-title">
        <header class="dialog__header">
          <h2 id="queue-modal-title">Job queue</h2>
          <span class="queue-modal__active muted" aria-live="polite"></span>
          <button type="button" class="close" data-action="close" aria-label="Close">✕</button>
        </header>
        <div class="queue-modal__tabs" role="tablist" aria-label="Queue views">
          <button type="button" role="tab" id="queue-tab-batches" data-tab="batches"
            aria-controls="queue-panel-batches" aria-selected="true">Batches</button>
          <button type="button" role="tab" id="queue-tab-sessions" data-tab="sessions"
            aria-controls="queue-panel-sessions" aria-selected="false" tabindex="-1">Sessions</button>
          <label class="queue-modal__show-completed">
            <input type="checkbox" name="show-completed"> Show completed
          </label>
        </div>
        <div class="dialog__body">
          <section role="tabpanel" id="queue-panel-batches" aria-labelledby="queue-tab-batches">
            <form class="queue-filters" role="search" aria-label="Filter jobs">
              <input type="search" name="q" placeholder="Search file name" aria-label="Search by file name"
                autocomplete="off" maxlength="200">
              <select name="status" aria-label="Status">
                <option value="">Any status</option>
                ${Object.entries(STATUS_LABEL).map(([value, label]) =>
                  `<option value="${value}">${label}</option>`).join("")}
              </select>
              <select name="batch" aria-label="Batch"><option value="">All batches</option></select>
              <label>From <input type="date" name="from"></label>
              <label>To <input type="date" name="to"></label>
              <button type="reset">Reset</button>
            </form>
            <form class="queue-new-batch">
              <input type="text" name="name" required maxlength="200" placeholder="Name of a new batch"
                aria-label="Name of a new batch">
              <button type="submit">New batch</button>
              <span class="queue-new-batch__message muted" role="status"></span>
            </form>
            <p class="queue-results__summary muted" aria-live="polite"></p>
            <div class="queue-results"></div>
            ${pagerMarkup("Queue pages")}
          </section>
          <section role="tabpanel" id="queue-panel-sessions" aria-labelledby="queue-tab-sessions" hidden>
            <session-view></session-view>
          </section>
        </div>
      </dialog>`;
  }

  setUp() {
    this.tab = "batches";
    this.offset = 0;
    this.total = 0;
    this.mode = "batches";
    this._request = 0;
    this.filters = this.querySelector(".queue-filters");
    this.results = this.querySelector(".queue-results");
    this.pager = this.querySelector("#queue-panel-batches .pager");
    this.showCompleted = this.querySelector('[name="show-completed"]');
    this.showCompleted.checked = localStorage.getItem(SHOW_COMPLETED_KEY) !== "false";

    const reload = () => {
      this.offset = 0;
      this.load();
    };
    this.filters.addEventListener("input", (event) => {
      if (event.target.name === "q") this._search();
    });
    this._search = debounce(reload, 300);
    this.filters.addEventListener("change", (event) => {
      if (event.target.name !== "q") reload();
    });
    this.filters.addEventListener("reset", () => setTimeout(reload));
    this.filters.addEventListener("submit", (event) => event.preventDefault());
    this.showCompleted.addEventListener("change", () => {
      localStorage.setItem(SHOW_COMPLETED_KEY, String(this.showCompleted.checked));
      this.querySelector("session-view").showCompleted = this.showCompleted.checked;
      reload();
    });
    this.pager.addEventListener("click", (event) => {
      const button = event.target.closest("[data-page]");
      if (!button) return;
      const step = this.mode === "jobs" ? JOB_PAGE : BATCH_PAGE;
      this.offset = Math.max(0, this.offset + (button.dataset.page === "next" ? step : -step));
      this.load();
      this.results.scrollIntoView({ block: "nearest" });
    });
    this.querySelector(".queue-new-batch").addEventListener("submit", (event) => this._newBatch(event));
    this.querySelector('[role="tablist"]').addEventListener("click", (event) => {
      const tab = event.target.closest('[role="tab"]');
      if (tab) this.selectTab(tab.dataset.tab);
    });
    this.querySelector('[role="tablist"]').addEventListener("keydown", (event) => this._tabKeys(event));
    store.on("change", (changed) => this._onChange(changed));
  }

  open(detail = {}) {
    this.show();
    this.querySelector("session-view").showCompleted = this.showCompleted.checked;
    this._renderActive();
    this._loadBatchOptions();
    if (detail.sessionId) {
      this.selectTab("sessions");
      this.querySelector("session-view").focusSession(detail.sessionId);
      return;
    }
    if (detail.batchId) {
      this.filters.reset();
      this._ensureBatchOption(detail.batchId);
      this.filters.elements.batch.value = detail.batchId;
      this.selectTab("batches", false);
      this.offset = 0;
    } else if (this.tab === "sessions") {
      this.querySelector("session-view").refresh();
      return;
    }
    this.load();
  }

  selectTab(name, load = true) {
    this.tab = name;
    for (const tab of this.querySelectorAll('[role="tab"]')) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      this.querySelector(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
    }
    if (!load) return;
    if (name === "sessions") this.querySelector("session-view").refresh();
    else this.load();
  }

  _tabKeys(event) {
    const tabs = [...this.querySelectorAll('[role="tab"]')];
    const index = tabs.indexOf(event.target);
    if (index < 0) return;
    let next = null;
    if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
    else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
    else if (event.key === "Home") next = tabs[0];
    else if (event.key === "End") next = tabs[tabs.length - 1];
    if (!next) return;
    event.preventDefault();
    next.focus();
    this.selectTab(next.dataset.tab);
  }

  _query() {
    const form = this.filters.elements;
    const status = form.status.value;
    return {
      q: form.q.value.trim(),
      status: status ? [status] : this.showCompleted.checked ? undefined : NOT_COMPLETED,
      since: dayStart(form.from.value),
      until: dayStart(form.to.value, 1),
      batchId: form.batch.value,
      explicitStatus: Boolean(status),
    };
  }

  /** Fetch and draw the current page of the Batches tab. */
  async load() {
    const query = this._query();
    this.mode = query.q || query.since || query.until || (query.batchId && query.explicitStatus)
      ? "jobs" : query.batchId ? "batch" : "batches";
    const request = ++this._request;
    this.results.setAttribute("aria-busy", "true");
    try {
      if (this.mode === "batch") {
        this._showBatch(query.batchId);
      } else if (this.mode === "jobs") {
        const page = await api.jobs({
          q: query.q, status: query.status, since: query.since, until: query.until,
          batch_id: query.batchId, limit: JOB_PAGE, offset: this.offset,
        });
        if (request !== this._request) return;
        store.upsertJobs(page.items);
        this._showJobs(page);
      } else {
        const page = await api.batches({ status: query.status, limit: BATCH_PAGE, offset: this.offset });
        if (request !== this._request) return;
        store.upsertBatches(page.items);
        this._showBatches(page, query);
      }
    } catch (error) {
      if (request !== this._request) return;
      this.results.replaceChildren();
      this._summary(`Could not load the queue: ${error.message}`);
    } finally {
      if (request === this._request) this.results.removeAttribute("aria-busy");
    }
  }

  _summary(text) {
    this.querySelector(".queue-results__summary").textContent = text;
  }

  _showBatch(batchId) {
    const card = document.createElement("batch-card");
    card.setAttribute("batch-id", batchId);
    card.setAttribute("expanded", "");
    this.results.replaceChildren(card);
    this.pager.hidden = true;
    this._summary("One batch. Choose “All batches” to see the rest.");
  }

  _showBatches(page, query) {
    this.total = page.total;
    this.pager.hidden = false;
    updatePager(this.pager, { offset: this.offset, limit: BATCH_PAGE, total: page.total });
    this._keyed(page.items.map((batch) => batch.id), "batch-card", "batch-id");
    const hidden = query.status === NOT_COMPLETED ? " (completed ones hidden)" : "";
    this._summary(page.total
      ? `${this._range(page.items.length, page.total)} batches${hidden}`
      : `No batches${hidden}.`);
  }

  _showJobs(page) {
    this.total = page.total;
    this.pager.hidden = false;
    updatePager(this.pager, { offset: this.offset, limit: JOB_PAGE, total: page.total });
    this._keyed(page.items.map((job) => job.id), "job-card", "job-id", true);
    this._summary(page.total ? `${this._range(page.items.length, page.total)} matching jobs` : "No jobs match.");
  }

  _range(count, total) {
    if (!count) return `0 of ${total}`;
    return `${this.offset + 1}–${this.offset + count} of ${total}`;
  }

  /** Replace the result rows, reusing elements whose id stays. */
  _keyed(ids, tag, attribute, compact = false) {
    const existing = new Map([...this.results.children]
      .filter((el) => el.localName === tag)
      .map((el) => [el.getAttribute(attribute), el]));
    this.results.replaceChildren(...ids.map((id) => {
      let el = existing.get(id);
      if (!el) {
        el = document.createElement(tag);
        el.setAttribute(attribute, id);
        if (compact) el.setAttribute("compact", "");
      }
      return el;
    }));
  }

  _onChange(changed) {
    if (!this.dialog.open) return;
    if (changed.jobs.size) this._renderActive();
    if (!changed.batches.size) return;
    for (const id of changed.batches) this._ensureBatchOption(id);
    // New batches (uploads, manual ones) appear on the first page of the plain batch list.
    if (this.tab !== "batches" || this.mode !== "batches" || this.offset !== 0) return;
    const { status } = this._query();
    const shown = new Set([...this.results.children].map((el) => el.getAttribute("batch-id")));
    const fresh = [...changed.batches]
      .map((id) => store.batches.get(id))
      .filter((batch) => batch && !shown.has(batch.id) && (!status || status.includes(batch.status)))
      .filter((batch) => this._isNewest(batch, shown))
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
    if (!fresh.length) return;
    for (const batch of fresh.reverse()) {
      const card = document.createElement("batch-card");
      card.setAttribute("batch-id", batch.id);
      this.results.prepend(card);
    }
    this.total += fresh.length;
    updatePager(this.pager, { offset: 0, limit: BATCH_PAGE, total: this.total });
    this._summary(`${this._range(this.results.children.length, this.total)} batches`);
  }

  /** A batch newer than every one on the page, i.e. one that belongs at the top. */
  _isNewest(batch, shown) {
    for (const id of shown) {
      const other = store.batches.get(id);
      if (other && other.created_at > batch.created_at) return false;
    }
    return true;
  }

  _renderActive() {
    const active = store.activeJobs().length;
    this.querySelector(".queue-modal__active").textContent =
      active ? `${active} active ${active === 1 ? "job" : "jobs"}` : "Nothing running";
  }

  async _loadBatchOptions() {
    try {
      const page = await api.batches({ limit: 100 });
      store.upsertBatches(page.items);
      for (const batch of page.items) this._ensureBatchOption(batch.id);
    } catch {
      // The list still works without the batch filter's options.
    }
  }

  _ensureBatchOption(id) {
    const select = this.filters.elements.batch;
    const batch = store.batches.get(id);
    let option = [...select.options].find((o) => o.value === id);
    if (!option) {
      option = document.createElement("option");
      option.value = id;
      // Newest first, right after "All batches".
      const after = [...select.options].slice(1)
        .find((o) => (store.batches.get(o.value)?.created_at || "") < (batch?.created_at || ""));
      select.insertBefore(option, after || null);
    }
    option.textContent = batch ? `${batchName(batch)} (${dateTime(batch.created_at)})` : id;
  }

  async _newBatch(event) {
    event.preventDefault();
    const form = event.target;
    const message = form.querySelector(".queue-new-batch__message");
    const name = form.elements.name.value.trim();
    if (!name) return;
    form.querySelector("button").disabled = true;
    try {
      const batch = await api.createManualBatch(name);
      store.upsertBatches([batch]);
      form.reset();
      message.textContent = `Created “${batch.name}”. Add images to it with its “Add images…” button.`;
      this.filters.reset();
      this.selectTab("batches");
    } catch (error) {
      message.textContent = `Could not create the batch: ${error.message}`;
    } finally {
      form.querySelector("button").disabled = false;
    }
  }
}

customElements.define("job-queue-modal", JobQueueModal);
