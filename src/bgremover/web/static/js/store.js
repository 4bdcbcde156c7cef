// The live store: jobs, batches and sessions kept current from /api/events.
//
// The first event after (re)connecting is a `snapshot` of everything active; then each
// event updates one thing. The browser's EventSource reconnects by itself and sends
// Last-Event-ID, so the server replays what was missed (or sends a fresh snapshot).
// Listeners hear about changes at most once per animation frame, with the ids that changed.

import { api } from "./api.js";

const ACTIVE = new Set(["pending", "processing"]);

function isNewer(known, incoming) {
  if (!ACTIVE.has(known.status) && ACTIVE.has(incoming.status)) return true;
  return known.status === incoming.status && known.progress > incoming.progress;
}

class Store extends EventTarget {
  constructor() {
    super();
    this.jobs = new Map();
    this.batches = new Map();
    this.sessions = new Map();
    this.connection = "closed";
    this.config = null;
    this.lastSeq = null;
    this._source = null;
    this._changed = { jobs: new Set(), batches: new Set(), sessions: new Set() };
    this._frame = null;
  }

  connect() {
    if (this._source) this._source.close();
    this._setConnection("connecting");
    const source = new EventSource(api.eventsUrl());
    this._source = source;
    source.onopen = () => this._setConnection("open");
    source.onerror = () => {
      // EventSource retries on its own; a closed one (e.g. 401) needs a new connect.
      this._setConnection(source.readyState === EventSource.CLOSED ? "closed" : "connecting");
      if (source.readyState === EventSource.CLOSED) setTimeout(() => this.connect(), 3000);
    };
    const on = (type, handler) => source.addEventListener(type, (event) => {
      this.lastSeq = Number(event.lastEventId);
      handler(JSON.parse(event.data));
    });
    on("snapshot", (data) => this._snapshot(data));
    on("job.updated", (data) => this._jobUpdated(data.job));
    on("job.progress", (data) => this._jobProgress(data));
    on("batch.updated", (data) => this._put(this.batches, "batches", data.batch));
    on("session.updated", (data) => this._put(this.sessions, "sessions", data.session));
    on("notification", (data) => this.dispatchEvent(new CustomEvent("notification", { detail: data })));
  }

  /** The server's /api/config (notification duration, dev mode, ...). */
  setConfig(config) {
    this.config = config;
    this.dispatchEvent(new CustomEvent("config", { detail: config }));
  }

  on(type, listener) {
    const wrapped = (event) => listener(event.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  /** Jobs fetched over REST (history, queue pages) join the live ones; a REST copy never
   * replaces newer live state (an ended job stays ended, progress never goes back). */
  upsertJobs(jobs) {
    for (const job of jobs) {
      const known = this.jobs.get(job.id);
      if (known && isNewer(known, job)) continue;
      this._put(this.jobs, "jobs", job);
    }
  }

  upsertBatches(batches) {
    for (const batch of batches) this._put(this.batches, "batches", batch);
  }

  activeJobs() {
    return [...this.jobs.values()]
      .filter((job) => ACTIVE.has(job.status))
      .sort((a, b) => (a.status === b.status ? 0 : a.status === "processing" ? -1 : 1)
        || b.priority - a.priority || a.created_at.localeCompare(b.created_at));
  }

  jobsOfBatch(batchId) {
    return [...this.jobs.values()]
      .filter((job) => job.batch_id === batchId)
      .sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  _snapshot(data) {
    const seen = new Set(data.jobs.map((job) => job.id));
    const vanished = [...this.jobs.values()].filter((j) => ACTIVE.has(j.status) && !seen.has(j.id));
    for (const job of data.jobs) this._put(this.jobs, "jobs", job);
    for (const batch of data.batches) this._put(this.batches, "batches", batch);
    for (const session of data.sessions) this._put(this.sessions, "sessions", session);
    // Jobs that ended while we were away: fetch how they ended.
    for (const job of vanished) {
      api.job(job.id).then((fresh) => this._put(this.jobs, "jobs", fresh))
        .catch(() => this._delete(job.id));
    }
    this.dispatchEvent(new CustomEvent("snapshot", { detail: data }));
  }

  _jobUpdated(job) {
    if (job.deleted) this._delete(job.id);
    else this._put(this.jobs, "jobs", job);
  }

  _jobProgress(data) {
    const job = this.jobs.get(data.id);
    if (!job || job.status !== "processing" || data.progress < job.progress) return;
    this._put(this.jobs, "jobs", {
      ...job, progress: data.progress, stage: data.stage, estimated_time_remaining: data.eta,
    });
  }

  _put(map, kind, item) {
    map.set(item.id, item);
    this._changed[kind].add(item.id);
    this._schedule();
  }

  _delete(id) {
    this.jobs.delete(id);
    this._changed.jobs.add(id);
    this._schedule();
  }

  _schedule() {
    if (this._frame !== null) return;
    const flush = () => {
      this._frame = null;
      const changed = this._changed;
      this._changed = { jobs: new Set(), batches: new Set(), sessions: new Set() };
      this.dispatchEvent(new CustomEvent("change", { detail: changed }));
    };
    // Hidden tabs get no animation frames; fall back to a timer there.
    this._frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush);
  }

  _setConnection(state) {
    this.connection = state;
    this.dispatchEvent(new CustomEvent("connection", { detail: state }));
  }
}

export const store = new Store();
