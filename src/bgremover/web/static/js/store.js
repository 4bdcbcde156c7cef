// The live store: jobs, batches and sessions kept current from /api/events.
//
// The first event after (re)connecting is a `snapshot` of everything active; then each
// event updates one thing. The browser's EventSource reconnects by itself and sends
// Last-Event-ID, so the server replays what was missed (or sends a fresh snapshot).
// Listeners hear about changes at most once per animation frame, with the ids that changed.
//
// Between events, estimates move with time: `liveEta` counts an ETA down from when it arrived
// and `liveProgress` advances a running item's percent at the pace its ETA implies (never
// past 99 %, never backwards), and a one-second tick redraws what is active.

import { api } from "./api.js";
import { ACTIVE } from "./format.js";

const TICK_MS = 1000;
const RECONNECT_MS = 3000;
const RECONNECT_MAX_MS = 120_000;

function running(item) {
  return item.status === "processing" || (item.counts && ACTIVE.has(item.status));
}

/** What the client adds to each job, batch or session the server sent: when it arrived
 * (`since`, performance.now() milliseconds) and the percent its bar must not go below
 * (`floor`). Kept beside the server's objects, keyed by them, so those stay as sent. */
const arrivals = new WeakMap();

/** Seconds left now: the estimate counted down since it arrived. */
export function liveEta(item) {
  const left = item.estimated_time_remaining;
  const since = arrivals.get(item)?.since;
  if (left == null || since == null) return left;
  return Math.max(0, left - (performance.now() - since) / 1000);
}

/** Percent now: from what was on screen when the last report came (or the report, if
 * higher), advanced toward 100 % at the pace its ETA implies. The server's batch and session
 * percent is already the share of the time elapsed (jobs/snapshots.py `time_share`: the
 * queue and the workers' warm-up count), and counting its ETA down draws the same line, so
 * this only animates between events what every client of the stream gets at the next. */
export function liveProgress(item) {
  const reported = item.progress || 0;
  const left = item.estimated_time_remaining;
  const arrival = arrivals.get(item);
  if (!running(item) || !left || !arrival) return reported;
  const start = Math.max(arrival.floor, reported);
  const elapsed = (performance.now() - arrival.since) / 1000;
  return Math.max(start, Math.min(99, start + (100 - start) * Math.min(elapsed / left, 1)));
}

/** Notes a report's arrival (`at`, by default now): when, and what was on screen for the
 * same item, which its bar never goes below (a batch going from pending to processing
 * included; a job's new attempt starts from pending, so from its own report). */
export function arrived(known, item, at = performance.now()) {
  const floor = known && running(known) && running(item) ? liveProgress(known) : 0;
  arrivals.set(item, { since: at, floor });
  return item;
}

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
    /** Dependencies the server reported ("storage": {ok, since, error}), from the snapshot
     * and `health.updated` events. */
    this.health = {};
    /** The queue's state ({paused, paused_by, paused_at, paused_batches, counts}), from the
     * snapshot and `queue.updated` events. */
    this.queue = null;
    this._source = null;
    this._retries = 0;
    this._changed = { jobs: new Set(), batches: new Set(), sessions: new Set() };
    this._frame = null;
    this._ticker = null;
  }

  connect() {
    if (this._source) this._source.close();
    this._setConnection("connecting");
    // A new connection resumes after the last event seen, so nothing in between is lost.
    const source = new EventSource(api.eventsUrl(this.lastSeq));
    this._source = source;
    source.onopen = () => {
      this._retries = 0;
      this._setConnection("open");
    };
    source.onerror = () => {
      // EventSource retries on its own; a closed one (an error answer: 401, or 429/503 when
      // the server's stream caps are reached) needs a new connect, later each time.
      this._setConnection(source.readyState === EventSource.CLOSED ? "closed" : "connecting");
      if (source.readyState === EventSource.CLOSED) setTimeout(() => this.connect(), this._backoff());
    };
    const on = (type, handler) => source.addEventListener(type, (event) => {
      const before = this.lastSeq;
      this.lastSeq = Number(event.lastEventId);
      handler(JSON.parse(event.data), before);
    });
    on("snapshot", (data, before) => this._snapshot(data, before));
    on("job.updated", (data) => this._put(this.jobs, "jobs", data.job));
    on("job.deleted", (data) => this._delete(data.job.id));
    on("job.progress", (data) => this._jobProgress(data));
    on("batch.updated", (data) => this._batchUpdated(data.batch));
    on("session.updated", (data) => this._put(this.sessions, "sessions", data.session));
    on("notification", (data) => this.dispatchEvent(new CustomEvent("notification", { detail: data })));
    on("health.updated", (data) => this._health(data));
    on("queue.updated", (data) => this.setQueue(data.queue));
  }

  /** Whether a job waits on a pause (the queue's or its batch's): it shows "Paused" instead
   * of an estimate. The server sends no event per job on a pause, so this is the rule. */
  jobPaused(job) {
    return job.status === "pending"
      && Boolean(this.queue?.paused || this.batches.get(job.batch_id)?.paused);
  }

  /** The queue's state as the server said it (an event, or the answer to pause/resume);
   * pending jobs redraw, since whether they wait on it changed. */
  setQueue(queue) {
    this.queue = queue;
    for (const job of this.jobs.values()) if (job.status === "pending") this._changed.jobs.add(job.id);
    this._schedule();
    this.dispatchEvent(new CustomEvent("queue", { detail: queue }));
  }

  _batchUpdated(batch) {
    const known = this.batches.get(batch.id);
    if (known && Boolean(known.paused) !== Boolean(batch.paused)) {
      for (const job of this.jobsOfBatch(batch.id)) this._changed.jobs.add(job.id);
    }
    this._put(this.batches, "batches", batch);
  }

  /** Dependencies that do not work now: [{name, since, error}]. */
  outages() {
    return Object.entries(this.health)
      .filter(([, state]) => state && state.ok === false)
      .map(([name, state]) => ({ name, since: state.since, error: state.error }));
  }

  _health(data) {
    this.health = { ...this.health, ...data };
    this.dispatchEvent(new CustomEvent("health", { detail: this.health }));
  }

  /** Milliseconds before the next connect: 3 s doubling to 2 min, with jitter so that many
   * tabs refused together do not come back together. */
  _backoff() {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MS * 2 ** this._retries);
    this._retries += 1;
    return base / 2 + Math.random() * (base / 2);
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

  _snapshot(data, missedAfter) {
    // Notifications that fell in the gap before this snapshot are shown, not lost.
    if (missedAfter != null) {
      for (const notice of data.notifications || []) {
        if (notice.seq > missedAfter) this.dispatchEvent(new CustomEvent("notification", { detail: notice }));
      }
    }
    const seen = new Set(data.jobs.map((job) => job.id));
    const vanished = [...this.jobs.values()].filter((j) => ACTIVE.has(j.status) && !seen.has(j.id));
    for (const job of data.jobs) this._put(this.jobs, "jobs", job);
    for (const batch of data.batches) this._put(this.batches, "batches", batch);
    for (const session of data.sessions) this._put(this.sessions, "sessions", session);
    this._health(data.health || {});
    if (data.queue) this.setQueue(data.queue);
    // Jobs that ended while we were away: fetch how they ended.
    for (const job of vanished) {
      api.job(job.id).then((fresh) => this._put(this.jobs, "jobs", fresh))
        .catch(() => this._delete(job.id));
    }
    this.dispatchEvent(new CustomEvent("snapshot", { detail: data }));
  }

  _jobProgress(data) {
    const job = this.jobs.get(data.id);
    if (!job || job.status !== "processing" || data.progress < job.progress) return;
    this._put(this.jobs, "jobs", {
      ...job, progress: data.progress, stage: data.stage, estimated_time_remaining: data.eta,
    });
  }

  _put(map, kind, item) {
    map.set(item.id, arrived(map.get(item.id), item));
    this._tick();
    this._changed[kind].add(item.id);
    this._schedule();
  }

  _delete(id) {
    this.jobs.delete(id);
    this._changed.jobs.add(id);
    this._schedule();
  }

  /** Redraw active items once a second while any exist, so estimates move between events. */
  _tick() {
    if (this._ticker) return;
    this._ticker = setInterval(() => {
      let active = false;
      for (const [kind, map] of [["jobs", this.jobs], ["batches", this.batches], ["sessions", this.sessions]]) {
        for (const item of map.values()) {
          if (running(item)) { this._changed[kind].add(item.id); active = true; }
        }
      }
      if (active) this._schedule();
      else { clearInterval(this._ticker); this._ticker = null; }
    }, TICK_MS);
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
