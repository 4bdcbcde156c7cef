// <history-view>: every completed result as a thumbnail over a checkerboard, in a <dialog>
// opened by bgremover:open {panel: "history"}. Search by file name, filter by date, page
// through, download, open in the editor, delete one or clear all (both confirmed first).

import { api } from "../api.js";
import { PanelDialog, openPanel } from "../panels.js";
import { store } from "../store.js";
import { bytes, dateTime, escapeHtml } from "../format.js";
import { dayStart, pagerMarkup, updatePager } from "./job-queue-modal.js";

const PAGE = 24;
// Tiles are up to about 250 CSS pixels wide; twice that for HiDPI screens.
const THUMB_SIZE = 512;

class HistoryView extends PanelDialog {
  static panel = "history";

  markup() {
    return `
      <dialog class="history-view" aria-labelledby="history-title">
        <header class="dialog__header">
          <h2 id="history-title">History</h2>
          <span class="history__total muted"></span>
          <button type="button" class="danger" data-action="clear-all">Clear all</button>
          <button type="button" class="close" data-action="close" aria-label="Close" autofocus>✕</button>
        </header>
        <div class="dialog__body">
          <form class="history__filters" role="search" aria-label="Filter history">
            <input type="search" name="q" placeholder="Search file name" aria-label="Search by file name"
              autocomplete="off" maxlength="200">
            <label>From <input type="date" name="from"></label>
            <label>To <input type="date" name="to"></label>
            <button type="reset">Reset</button>
          </form>
          <div class="history__confirm" role="alertdialog" aria-labelledby="history-confirm-text" hidden>
            <p id="history-confirm-text"></p>
            <button type="button" class="danger" data-action="confirm-yes">Delete</button>
            <button type="button" data-action="confirm-no">Keep</button>
          </div>
          <p class="history__status muted" aria-live="polite"></p>
          <ul class="history__grid"></ul>
          ${pagerMarkup("History pages")}
        </div>
      </dialog>`;
  }

  setUp() {
    this.offset = 0;
    this.total = 0;
    this._request = 0;
    this._shown = new Set();
    this.grid = this.querySelector(".history__grid");
    this.filters = this.querySelector("form");
    this.pager = this.querySelector(".pager");

    let timer;
    this.filters.addEventListener("input", (event) => {
      if (event.target.name !== "q") return;
      clearTimeout(timer);
      timer = setTimeout(() => this._reload(), 300);
    });
    this.filters.addEventListener("change", (event) => {
      if (event.target.name !== "q") this._reload();
    });
    this.filters.addEventListener("reset", () => setTimeout(() => this._reload()));
    this.filters.addEventListener("submit", (event) => event.preventDefault());
    this.pager.addEventListener("click", (event) => {
      const button = event.target.closest("[data-page]");
      if (!button) return;
      this.offset = Math.max(0, this.offset + (button.dataset.page === "next" ? PAGE : -PAGE));
      this.load();
    });
    store.on("change", (changed) => this._onChange(changed));
  }

  open() {
    this.show();
    this.load();
  }

  close() {
    this._confirm(null);
    super.close();
  }

  _reload() {
    this.offset = 0;
    this.load();
  }

  async load() {
    const form = this.filters.elements;
    const request = ++this._request;
    this.grid.setAttribute("aria-busy", "true");
    try {
      let page = await this._fetch(form);
      // Deleting the last item of the last page leaves it empty: step back one.
      if (!page.items.length && this.offset > 0) {
        this.offset = Math.max(0, (Math.ceil(page.total / PAGE) - 1) * PAGE);
        page = await this._fetch(form);
      }
      if (request !== this._request) return;
      store.upsertJobs(page.items);
      this._render(page);
    } catch (error) {
      if (request !== this._request) return;
      this.querySelector(".history__status").textContent = `Could not load the history: ${error.message}`;
    } finally {
      if (request === this._request) this.grid.removeAttribute("aria-busy");
    }
  }

  _fetch(form) {
    return api.jobs({
      status: "completed",
      q: form.q.value.trim(),
      since: dayStart(form.from.value),
      until: dayStart(form.to.value, 1),
      limit: PAGE,
      offset: this.offset,
    });
  }

  _filtered() {
    const form = this.filters.elements;
    return Boolean(form.q.value.trim() || form.from.value || form.to.value);
  }

  _render(page) {
    this.total = page.total;
    this._shown = new Set(page.items.map((job) => job.id));
    updatePager(this.pager, { offset: this.offset, limit: PAGE, total: page.total });
    this.querySelector(".history__total").textContent =
      page.total ? `${page.total} ${page.total === 1 ? "result" : "results"}` : "";
    this.querySelector('[data-action="clear-all"]').disabled = page.total === 0 && !this._filtered();
    this.querySelector(".history__status").textContent = page.total
      ? ""
      : this._filtered() ? "No results match." : "No results yet. Finished images appear here.";
    this.grid.innerHTML = page.items.map((job) => {
      const name = escapeHtml(job.file_name);
      const model = job.result?.model ? ` · ${escapeHtml(job.result.model)}` : "";
      const size = job.result ? `${job.result.width}×${job.result.height} · ${bytes(job.result.bytes)}${model}` : "";
      return `
        <li class="history__item" data-job-id="${escapeHtml(job.id)}">
          <button type="button" class="history__thumb checkerboard" data-action="edit"
            title="Open ${name} in the editor">
            <img src="${escapeHtml(api.thumbnailUrl(job.id, { size: THUMB_SIZE, of: "result" }))}"
              alt="${name}, background removed"
              loading="lazy" decoding="async" width="${job.result?.width || ""}" height="${job.result?.height || ""}">
          </button>
          <div class="history__info">
            <span class="history__name" title="${name}">${name}</span>
            <span class="muted"><time datetime="${escapeHtml(job.end_time || job.created_at)}">${escapeHtml(
              dateTime(job.end_time || job.created_at))}</time></span>
            <span class="muted">${size}</span>
          </div>
          <div class="history__actions">
            <a class="button-like" data-action="download" href="${escapeHtml(api.resultUrl(job.id))}"
              download aria-label="Download ${name}">Download</a>
            <button type="button" class="danger" data-action="delete" aria-label="Delete ${name}">Delete</button>
          </div>
        </li>`;
    }).join("");
  }

  onAction(action, button) {
    if (button.tagName !== "BUTTON") return; // a download link: the browser follows it
    const item = button.closest(".history__item");
    if (action === "edit") openPanel("editor", { jobId: item.dataset.jobId });
    else if (action === "delete") {
      const name = item.querySelector(".history__name").textContent;
      this._confirm(`Delete “${name}” and its result? This cannot be undone.`, async () => {
        await api.deleteJob(item.dataset.jobId);
        this._status(`Deleted ${name}.`);
      }, button);
    } else if (action === "clear-all") {
      const scope = this._filtered()
        ? "every completed result, not only the ones this search shows"
        : `all ${this.total} completed results`;
      this._confirm(`Delete ${scope}? This cannot be undone.`,
        async () => {
          const { deleted } = await api.deleteJobs(["completed"]);
          this._status(`Deleted ${deleted} ${deleted === 1 ? "result" : "results"}.`);
        }, button);
    } else if (action === "confirm-yes") this._confirmed();
    else if (action === "confirm-no") this._confirm(null);
  }

  _status(text) {
    this.querySelector(".history__status").textContent = text;
  }

  /** An in-dialog confirmation (window.confirm would sit behind the modal on some phones). */
  _confirm(text, action, returnFocus) {
    const box = this.querySelector(".history__confirm");
    this._pending = text ? { action, returnFocus } : null;
    box.hidden = !text;
    if (!text) return;
    box.querySelector("p").textContent = text;
    box.querySelector('[data-action="confirm-yes"]').focus();
  }

  async _confirmed() {
    const pending = this._pending;
    if (!pending) return;
    const yes = this.querySelector('[data-action="confirm-yes"]');
    yes.disabled = true;
    try {
      await pending.action();
      this._confirm(null);
      await this.load();
      (pending.returnFocus?.isConnected ? pending.returnFocus : this.querySelector(".close")).focus();
    } catch (error) {
      this._confirm(null);
      this._status(`Could not delete: ${error.message}`);
    } finally {
      yes.disabled = false;
    }
  }

  _onChange(changed) {
    if (!this.dialog?.open || !changed.jobs.size || this._pending) return;
    // A result that just finished shows on the first page; a deleted one leaves.
    const relevant = [...changed.jobs].some((id) => {
      const job = store.jobs.get(id);
      return job ? job.status === "completed" && !this._shown.has(id) && this.offset === 0 : this._shown.has(id);
    });
    if (relevant) {
      clearTimeout(this._refresh);
      this._refresh = setTimeout(() => this.load(), 300);
    }
  }
}

customElements.define("history-view", HistoryView);
