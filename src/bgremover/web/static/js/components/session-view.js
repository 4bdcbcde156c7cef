// <session-view>: sessions (uploads grouped by time), newest first, a page at a time, each
// with its progress, totals, duration and ETA; opening one shows its batches as <batch-card>s.
// Data: api.sessions() pages, kept current by the store's session.updated events.
// API: refresh(), focusSession(id), showCompleted (false hides completed batches inside).

import { api } from "../api.js";
import { liveEta, liveProgress, store } from "../store.js";
import {
  ACTIVE, COUNT_LABELS, STATUS_LABEL, dateTime, escapeHtml, eta, percent, seconds, sessionName,
} from "../format.js";
import { pagerMarkup, updatePager } from "./job-queue-modal.js";

const PAGE = 10;

class SessionView extends HTMLElement {
  constructor() {
    super();
    this.offset = 0;
    this.total = 0;
    this._fetched = new Map(); // sessions from REST; live ones in store.sessions win
    this._expanded = new Set();
    this._batchesLoaded = new Set();
    this._showCompleted = true;
    this._request = 0;
  }

  connectedCallback() {
    if (this._ready) return;
    this._ready = true;
    this.innerHTML = `
      <p class="session-view__summary muted" aria-live="polite"></p>
      <div class="session-view__list"></div>
      ${pagerMarkup("Session pages")}`;
    this.list = this.querySelector(".session-view__list");
    this.pager = this.querySelector(".pager");
    this.pager.addEventListener("click", (event) => {
      const button = event.target.closest("[data-page]");
      if (!button) return;
      this.offset = Math.max(0, this.offset + (button.dataset.page === "next" ? PAGE : -PAGE));
      this.refresh();
    });
    this.list.addEventListener("click", (event) => {
      const toggle = event.target.closest('[data-action="toggle-session"]');
      if (toggle) this._toggle(toggle.closest(".session").dataset.sessionId);
    });
    store.on("change", (changed) => this._onChange(changed));
    if (this.hasAttribute("autoload")) this.refresh();
  }

  get showCompleted() {
    return this._showCompleted;
  }

  set showCompleted(value) {
    this._showCompleted = Boolean(value);
    for (const row of this.list?.children || []) this._renderBatches(row);
  }

  _session(id) {
    return store.sessions.get(id) || this._fetched.get(id);
  }

  async refresh() {
    const request = ++this._request;
    this.list.setAttribute("aria-busy", "true");
    try {
      const page = await api.sessions({ limit: PAGE, offset: this.offset });
      if (request !== this._request) return;
      for (const session of page.items) this._fetched.set(session.id, session);
      this.total = page.total;
      // The newest session starts open, the way one usually looks at "what I just did".
      if (this.offset === 0 && page.items[0] && !this._opened) {
        this._opened = true;
        this._expanded.add(page.items[0].id);
      }
      this._renderList(page.items.map((s) => s.id));
    } catch (error) {
      if (request !== this._request) return;
      this.querySelector(".session-view__summary").textContent = `Could not load sessions: ${error.message}`;
    } finally {
      if (request === this._request) this.list.removeAttribute("aria-busy");
    }
  }

  /** Show one session open at the top of the list (from a notification's View). */
  async focusSession(id) {
    await this.refresh();
    if (!this._session(id)) {
      try {
        this._fetched.set(id, await api.session(id));
      } catch {
        return;
      }
    }
    let row = this._row(id);
    if (!row) {
      row = this._createRow(id);
      this.list.prepend(row);
    }
    this._expanded.add(id);
    this._renderRow(row);
    row.scrollIntoView({ block: "start" });
    row.classList.add("highlight");
    setTimeout(() => row.classList.remove("highlight"), 2000);
  }

  _row(id) {
    return [...this.list.children].find((row) => row.dataset.sessionId === id);
  }

  _renderList(ids) {
    const existing = new Map([...this.list.children].map((row) => [row.dataset.sessionId, row]));
    this.list.replaceChildren(...ids.map((id) => existing.get(id) || this._createRow(id)));
    for (const row of this.list.children) this._renderRow(row);
    updatePager(this.pager, { offset: this.offset, limit: PAGE, total: this.total });
    this.querySelector(".session-view__summary").textContent = this.total
      ? `${this.offset + 1}–${this.offset + ids.length} of ${this.total} sessions`
      : "No sessions yet. Upload images to start one.";
  }

  _createRow(id) {
    const row = document.createElement("article");
    row.className = "session";
    row.dataset.sessionId = id;
    row.innerHTML = `
      <div class="session__head">
        <button type="button" class="batch-card__expand" data-action="toggle-session"
          aria-expanded="false" aria-controls="session-${escapeHtml(id)}-batches" aria-label="Show batches">
          <span aria-hidden="true">▸</span></button>
        <div class="session__title"><strong class="session__name"></strong> <span class="status"></span></div>
        <span class="session__percent"></span>
      </div>
      <progress-bar></progress-bar>
      <div class="session__meta muted"></div>
      <div class="session__batches" id="session-${escapeHtml(id)}-batches" hidden>
        <p class="session__hidden muted" hidden></p>
      </div>`;
    return row;
  }

  _renderRow(row) {
    const session = this._session(row.dataset.sessionId);
    if (!session) return;
    const active = ACTIVE.has(session.status);
    row.dataset.status = session.status;
    row.querySelector(".session__name").textContent = sessionName(session);
    const status = row.querySelector(".status");
    status.dataset.status = session.status;
    status.textContent = STATUS_LABEL[session.status] || session.status;
    const live = liveProgress(session);
    row.querySelector(".session__percent").textContent = percent(live);
    const bar = row.querySelector("progress-bar");
    bar.setAttribute("value", String(Math.round(live * 10) / 10));
    bar.setAttribute("status", session.status);
    bar.setAttribute("label", `${sessionName(session)}: ${percent(live)}`);
    const { counts } = session;
    const batches = session.batch_ids.length;
    const countParts = [
      `<span class="count">${batches} ${batches === 1 ? "batch" : "batches"}</span>`,
      `<span class="count">${counts.total} ${counts.total === 1 ? "image" : "images"}</span>`,
      ...COUNT_LABELS.filter(([key]) => counts[key])
        .map(([key, label]) => `<span class="count" data-status="${key}">${counts[key]} ${label}</span>`),
    ];
    const parts = [
      `<span>${countParts.join("")}</span>`,
      `<span>started ${escapeHtml(dateTime(session.started_at))}</span>`,
    ];
    if (session.duration) parts.push(`<span>${active ? "running" : "took"} ${seconds(session.duration)}</span>`);
    if (active && session.eta_reason === "paused") parts.push("<span>Paused</span>");
    else if (active && session.estimated_time_remaining) parts.push(`<span>${eta(liveEta(session))}</span>`);
    row.querySelector(".session__meta").innerHTML = parts.join("");

    const expanded = this._expanded.has(session.id);
    const toggle = row.querySelector('[data-action="toggle-session"]');
    toggle.setAttribute("aria-expanded", String(expanded));
    toggle.setAttribute("aria-label", expanded ? "Hide batches" : "Show batches");
    row.querySelector(".session__batches").hidden = !expanded;
    if (expanded) {
      if (this._batchesLoaded.has(session.id)) this._renderBatches(row);
      else this._loadBatches(row);
    }
  }

  async _loadBatches(row) {
    const id = row.dataset.sessionId;
    this._batchesLoaded.add(id);
    try {
      const page = await api.batches({ session_id: id, limit: 100 });
      store.upsertBatches(page.items);
    } catch {
      this._batchesLoaded.delete(id); // try again next time it opens
    }
    this._renderBatches(row);
  }

  _renderBatches(row) {
    const session = this._session(row.dataset.sessionId);
    const container = row.querySelector(".session__batches");
    if (!session || container.hidden) return;
    const ids = [...session.batch_ids].reverse(); // newest first
    const shown = ids.filter((id) => this._showCompleted || store.batches.get(id)?.status !== "completed");
    const existing = new Map([...container.querySelectorAll("batch-card")]
      .map((card) => [card.getAttribute("batch-id"), card]));
    const note = container.querySelector(".session__hidden");
    const hidden = ids.length - shown.length;
    note.hidden = hidden === 0;
    note.textContent = `${hidden} completed ${hidden === 1 ? "batch" : "batches"} hidden (“Show completed” is off).`;
    container.replaceChildren(note, ...shown.map((id) => {
      let card = existing.get(id);
      if (!card) {
        card = document.createElement("batch-card");
        card.setAttribute("batch-id", id);
      }
      return card;
    }));
  }

  _toggle(id) {
    if (this._expanded.has(id)) this._expanded.delete(id);
    else this._expanded.add(id);
    const row = this._row(id);
    if (row) this._renderRow(row);
  }

  _onChange(changed) {
    if (!this.list || !changed.sessions.size || !this.isConnected || this.closest("[hidden]")) return;
    for (const id of changed.sessions) {
      let row = this._row(id);
      if (!row && this.offset === 0 && this._request > 0) {
        // A session that just started goes on top.
        const session = this._session(id);
        const first = this._session(this.list.firstElementChild?.dataset.sessionId);
        if (session && (!first || session.started_at >= first.started_at)) {
          row = this._createRow(id);
          this.list.prepend(row);
          this.total += 1;
          updatePager(this.pager, { offset: 0, limit: PAGE, total: this.total });
        }
      }
      if (row) this._renderRow(row);
    }
  }
}

customElements.define("session-view", SessionView);
