// <job-queue-sidebar>: the active jobs (processing first, then the queue in run order) as
// compact <job-card>s, with a count and a link to the full queue. Collapsible; the collapsed
// state is remembered. Only the first MAX_ROWS are drawn so a 1,000-job queue stays light.

import { openPanel } from "../panels.js";
import { store } from "../store.js";

const COLLAPSED_KEY = "bgremover.sidebar.collapsed";
const MAX_ROWS = 25;

class JobQueueSidebar extends HTMLElement {
  connectedCallback() {
    if (this._ready) return;
    this._ready = true;
    this.innerHTML = `
      <aside class="queue-sidebar" aria-labelledby="queue-sidebar-title">
        <div class="queue-sidebar__head">
          <button type="button" class="queue-sidebar__toggle" data-action="toggle"
            aria-expanded="true" aria-controls="queue-sidebar-body">
            <span class="queue-sidebar__chevron" aria-hidden="true">▾</span>
            <span id="queue-sidebar-title">Active jobs</span>
            <span class="badge queue-sidebar__count" data-count="0">0</span>
            <span class="queue-sidebar__paused" hidden>Paused</span>
          </button>
          <button type="button" class="link" data-action="open-queue">Open queue</button>
        </div>
        <div class="queue-sidebar__body" id="queue-sidebar-body">
          <p class="queue-sidebar__empty muted">No active jobs. Drop images to start.</p>
          <div class="queue-sidebar__list" role="list" aria-label="Active jobs"></div>
          <p class="queue-sidebar__more muted" hidden></p>
        </div>
      </aside>`;
    this.list = this.querySelector(".queue-sidebar__list");
    this.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.closest("job-card")) return;
      if (button.dataset.action === "toggle") this.collapsed = !this.collapsed;
      if (button.dataset.action === "open-queue") {
        openPanel("jobs");
      }
    });
    this.collapsed = localStorage.getItem(COLLAPSED_KEY) === "true";
    store.on("change", () => this._render());
    store.on("queue", (queue) => {
      this.querySelector(".queue-sidebar__paused").hidden = !queue?.paused;
      this.dataset.paused = String(Boolean(queue?.paused));
    });
    this._render();
  }

  get collapsed() {
    return this.hasAttribute("collapsed");
  }

  set collapsed(value) {
    this.toggleAttribute("collapsed", Boolean(value));
    localStorage.setItem(COLLAPSED_KEY, String(Boolean(value)));
    const toggle = this.querySelector(".queue-sidebar__toggle");
    toggle.setAttribute("aria-expanded", String(!value));
    this.querySelector(".queue-sidebar__body").hidden = Boolean(value);
  }

  _render() {
    const active = store.activeJobs();
    const count = this.querySelector(".queue-sidebar__count");
    count.textContent = String(active.length);
    count.dataset.count = String(active.length);
    this.dataset.count = String(active.length);
    this.querySelector(".queue-sidebar__empty").hidden = active.length > 0;
    const shown = active.slice(0, MAX_ROWS);
    const existing = new Map([...this.list.children].map((el) => [el.getAttribute("job-id"), el]));
    const rows = shown.map((job) => {
      let card = existing.get(job.id);
      if (!card) {
        card = document.createElement("job-card");
        card.setAttribute("job-id", job.id);
        card.setAttribute("compact", "");
        card.setAttribute("role", "listitem");
      }
      return card;
    });
    // Only touch the DOM when membership or order changed; cards update themselves.
    const same = rows.length === this.list.children.length && rows.every((row, i) => this.list.children[i] === row);
    if (!same) this.list.replaceChildren(...rows);
    const more = this.querySelector(".queue-sidebar__more");
    more.hidden = active.length <= MAX_ROWS;
    more.textContent = `and ${active.length - MAX_ROWS} more in the queue`;
  }
}

customElements.define("job-queue-sidebar", JobQueueSidebar);
