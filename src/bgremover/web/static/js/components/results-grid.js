// <results-grid>: the workspace's results, newest first. It holds the jobs uploaded from this
// page (`bgremover:uploaded`) and every job the live store sees active, so uploads from
// another tab, retries and editor derivations show up too.
//
// Each tile is a preview (the original while queued or running, with a progress ring; then a
// before/after slider over a checkerboard) above a <job-card> that carries the live stage,
// percent, ETA and the actions. Tiles are rendered a page at a time: the first PAGE, then
// more when a sentinel at the bottom scrolls into view, so a thousand jobs stay responsive.
// A retry's new attempt takes over its predecessor's tile instead of adding a second one.
//
// Listens to `bgremover:view-job` {jobId}: scrolls to the job's tile and highlights it.

import { api } from "../api.js";
import { store } from "../store.js";
import { ACTIVE, STATUS_LABEL, hasPreview } from "../format.js";
import "./circular-progress.js";
import "./job-card.js";

// Previews, not full photos: a tile is at most about 400 CSS pixels wide, and the original and
// the result at the same size line up under the before/after split.
const PREVIEW_SIZE = 768;

const PAGE = 60;
const HIGHLIGHT_MS = 2000;

class ResultsGrid extends HTMLElement {
  connectedCallback() {
    if (this._list) return;
    this._ids = []; // every job shown, newest first; only the first `_limit` have tiles
    this._known = new Set(this._ids);
    this._tiles = new Map(); // job id → tile element
    this._rank = new Map(); // job id → {created, order}: its place in the grid
    this._seen = 0;
    this._limit = PAGE;

    this.innerHTML = `
      <h2 class="results-grid__title">Results <span class="muted results-grid__count"></span></h2>
      <p class="results-grid__empty muted">Your results appear here. Earlier ones are in History (H).</p>
      <ol class="results-grid__list"></ol>
      <div class="results-grid__more" aria-hidden="true"></div>`;
    this._list = this.querySelector(".results-grid__list");
    this._empty = this.querySelector(".results-grid__empty");
    this._count = this.querySelector(".results-grid__count");
    this._sentinel = this.querySelector(".results-grid__more");

    this._observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && this._limit < this._ids.length) {
        this._limit += PAGE;
        this._sync();
      }
    }, { rootMargin: "600px" });
    this._observer.observe(this._sentinel);

    store.on("change", ({ jobs }) => this._onChange(jobs));
    window.addEventListener("bgremover:uploaded", (event) => {
      // The live events may have shown these jobs already; the upload knows their order.
      this._add(event.detail.jobs.map((job) => job.id), { force: true });
    });
    window.addEventListener("bgremover:view-job", (event) => this.reveal(event.detail.jobId));
    this._onChange(new Set(store.jobs.keys()));
  }

  _onChange(changed) {
    const added = [];
    let removed = false;
    for (const id of changed) {
      const job = store.jobs.get(id);
      if (!job) {
        removed = this._remove(id) || removed;
      } else if (job.retried_from && this._known.has(job.retried_from) && !this._known.has(id)) {
        this._replace(job.retried_from, id);
      } else if (ACTIVE.has(job.status) && !this._known.has(id)) {
        added.push(id);
      } else {
        this._tiles.get(id)?.update(job);
      }
    }
    if (added.length) this._add(added);
    else if (removed) this._sync();
  }

  /** Show more jobs, newest first. A batch's jobs share one created_at; they keep the order
   * they were first seen in (the upload's order, or the events' order for other jobs). */
  _add(ids, { force = false } = {}) {
    const fresh = ids.filter((id) => !this._known.has(id) && store.jobs.has(id));
    for (const id of ids) {
      if (!force && this._rank.has(id)) continue;
      const created = store.jobs.get(id)?.created_at || "";
      this._rank.set(id, { created, order: this._seen++ });
    }
    if (!fresh.length && !force) return;
    for (const id of fresh) this._known.add(id);
    this._ids = fresh.concat(this._ids).sort((a, b) => {
      const x = this._rank.get(a);
      const y = this._rank.get(b);
      // ISO timestamps compare as strings; newest first, then first seen first.
      return x.created === y.created ? x.order - y.order : x.created < y.created ? 1 : -1;
    });
    this._sync();
  }

  _remove(id) {
    if (!this._known.delete(id)) return false;
    this._rank.delete(id);
    this._ids = this._ids.filter((other) => other !== id);
    this._tiles.get(id)?.el.remove();
    this._tiles.delete(id);
    return true;
  }

  /** A retry keeps its place: the old attempt's tile now follows the new one. */
  _replace(oldId, newId) {
    this._known.delete(oldId);
    this._known.add(newId);
    this._rank.set(newId, this._rank.get(oldId));
    this._rank.delete(oldId);
    this._ids[this._ids.indexOf(oldId)] = newId;
    const tile = this._tiles.get(oldId);
    if (!tile) return;
    this._tiles.delete(oldId);
    this._tiles.set(newId, tile);
    tile.show(newId);
  }

  /** Make the DOM hold tiles for the first `_limit` ids, in order, touching only what moved. */
  _sync() {
    const wanted = this._ids.slice(0, this._limit);
    const keep = new Set(wanted);
    for (const [id, tile] of this._tiles) {
      if (!keep.has(id)) {
        tile.el.remove();
        this._tiles.delete(id);
      }
    }
    let cursor = this._list.firstElementChild;
    for (const id of wanted) {
      let tile = this._tiles.get(id);
      if (!tile) {
        tile = new ResultTile();
        this._tiles.set(id, tile);
        tile.show(id);
      }
      if (tile.el === cursor) cursor = cursor.nextElementSibling;
      else this._list.insertBefore(tile.el, cursor);
    }
    this._empty.hidden = this._ids.length > 0;
    this._count.textContent = this._ids.length ? `(${this._ids.length})` : "";
    this._sentinel.hidden = this._limit >= this._ids.length;
  }

  /** Scroll to a job's tile (adding it if it is not shown yet) and highlight it. */
  async reveal(jobId) {
    if (!store.jobs.has(jobId)) {
      try {
        const job = await api.job(jobId);
        if (!store.jobs.has(jobId)) store.upsertJobs([job]);
      } catch {
        return;
      }
    }
    if (!this._known.has(jobId)) this._add([jobId]);
    const index = this._ids.indexOf(jobId);
    if (index >= this._limit) {
      this._limit = index + 1;
      this._sync();
    }
    const tile = this._tiles.get(jobId)?.el;
    if (!tile) return;
    tile.scrollIntoView({
      block: "center",
      behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth",
    });
    tile.focus({ preventScroll: true });
    tile.classList.add("is-highlighted");
    clearTimeout(tile._highlight);
    tile._highlight = setTimeout(() => tile.classList.remove("is-highlighted"), HIGHLIGHT_MS);
  }
}

// One tile of the grid (a plain <li>, not an element of its own): a preview and a <job-card>.
// The grid calls update() when the store reports the job changed; the preview is rebuilt only
// when the job's status changes, otherwise only the ring's value moves.
class ResultTile {
  constructor() {
    this.el = document.createElement("li");
    this.el.className = "result-tile";
    this.el.tabIndex = -1; // focusable for reveal(), not a tab stop
    this.el.innerHTML = `
      <div class="result-tile__preview checkerboard"></div>
      <job-card no-thumb no-view></job-card>`;
    this._preview = this.el.firstElementChild;
    this._card = this.el.lastElementChild;
    // An image that cannot be shown (not decodable, original deleted) leaves the
    // checkerboard and a "No preview" note instead of a broken-image icon.
    this._preview.addEventListener("error", (event) => {
      if (event.target.tagName === "IMG") event.target.hidden = true;
    }, true);
  }

  show(jobId) {
    this.jobId = jobId;
    this.el.dataset.jobId = jobId;
    this._card.setAttribute("job-id", jobId);
    this._status = null;
    const job = store.jobs.get(jobId);
    if (job) this.update(job);
  }

  update(job) {
    if (job.status !== this._status) {
      this._status = job.status;
      this.el.dataset.status = job.status;
      if (job.status === "completed") this._showCompare(job);
      else this._showOriginal(job);
    }
    if (this._ring) {
      const value = String(Math.round(job.progress || 0));
      if (this._ring.getAttribute("value") !== value) this._ring.setAttribute("value", value);
    }
  }

  _showOriginal(job) {
    const active = ACTIVE.has(job.status);
    this._preview.innerHTML = `
      <img class="result-tile__original" alt="" loading="lazy" decoding="async">
      ${active ? `<circular-progress class="result-tile__ring" status="${job.status}"></circular-progress>`
        : `<span class="result-tile__state status" data-status="${job.status}">${STATUS_LABEL[job.status]}</span>`}`;
    const img = this._preview.querySelector("img");
    img.alt = `${job.file_name} (original)`;
    if (hasPreview(job)) img.src = api.thumbnailUrl(job.id, { size: PREVIEW_SIZE });
    else img.hidden = true;
    this._ring = this._preview.querySelector("circular-progress");
    this._ring?.setAttribute("label", `${job.file_name} progress`);
  }

  // Before/after: the original shows left of the split, the result right of it (CSS clips
  // both at --split). An invisible range input over the picture moves the split, so it works
  // with a mouse, a finger, the keyboard and a screen reader.
  _showCompare(job) {
    this._ring = null;
    this._preview.innerHTML = `
      <img class="result-tile__original" alt="" loading="lazy" decoding="async">
      <img class="result-tile__result" alt="" loading="lazy" decoding="async">
      <span class="result-tile__divider" aria-hidden="true"></span>
      <span class="result-tile__label result-tile__label--before" aria-hidden="true">Before</span>
      <span class="result-tile__label result-tile__label--after" aria-hidden="true">After</span>
      <input class="result-tile__slider" type="range" min="0" max="100" value="50">`;
    const [original, result] = this._preview.querySelectorAll("img");
    original.src = api.thumbnailUrl(job.id, { size: PREVIEW_SIZE });
    original.alt = `${job.file_name} before`;
    result.src = api.thumbnailUrl(job.id, { size: PREVIEW_SIZE, of: "result" });
    result.alt = `${job.file_name} without background`;
    if (PLAYABLE.has(job.result?.format)) result.replaceWith(clipPlayer(job, result));
    else if (animates(job)) result.src = api.resultUrl(job.id); // the <img> plays it
    const slider = this._preview.querySelector("input");
    slider.setAttribute("aria-label", `Compare ${job.file_name}: original on the left, result on the right`);
    const apply = () => this._preview.style.setProperty("--split", `${slider.value}%`);
    slider.addEventListener("input", apply);
    apply();
  }
}

/** Clip results the browser plays itself (the WebM keeps its alpha over the checkerboard). */
const PLAYABLE = new Set(["webm", "mp4"]);

/** Whether the job's result is an animation an <img> plays: a clip's GIF or WebP (a photo
 * asked for GIF gets a PNG; its WebP is a still). */
function animates(job) {
  const format = job.result?.format;
  const clip = job.media_type?.startsWith("video/") || job.media_type === "image/gif";
  return format === "gif" || (format === "webp" && clip);
}

/** A muted, looping <video> of a clip's result in place of its still, its poster the first
 * frame; it plays over the tile's checkerboard as the still did. */
export function clipPlayer(job, still) {
  const video = document.createElement("video");
  video.className = still.className;
  video.src = api.resultUrl(job.id);
  video.poster = still.src;
  Object.assign(video, { muted: true, loop: true, autoplay: true, playsInline: true });
  video.setAttribute("aria-label", still.alt);
  return video;
}

customElements.define("results-grid", ResultsGrid);
