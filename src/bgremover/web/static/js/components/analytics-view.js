// <analytics-view>: charts of what the job system did in a window (GET /api/analytics), in a
// <dialog> opened by bgremover:open {panel: "analytics", since?} (the A key, the top bar's
// button, or a batch card's "Analytics" with the batch's start). Images per hour, stage and
// image-size durations, queue wait and predicted-vs-actual run times are uPlot charts;
// failures by reason are a table. It redraws when jobs end and when the theme changes.

import { api } from "../api.js";
import { PanelDialog } from "../panels.js";
import { store } from "../store.js";
import { ENDED, dateTime, escapeHtml } from "../format.js";
import {
  describe, draw, duration, etaChart, hoursChart, spreadChart, themeColours, waitChart,
} from "../charts.js";

const WINDOWS = [
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
];
const CHARTS = [
  ["hours", "Images per hour", "Completed and failed jobs by the hour they ended."],
  ["stages", "Time per stage", "Median and 90th percentile of each stage of completed jobs."],
  ["sizes", "Time per image size", "Median and 90th percentile of a whole run, by megapixels."],
  ["wait", "Queue wait", "From upload to start, by the hour jobs started."],
  ["eta", "Predicted vs actual", "Each completed job's estimate when it started, and its run time."],
];

class AnalyticsView extends PanelDialog {
  static panel = "analytics";

  markup() {
    const options = WINDOWS.map(([value, label]) =>
      `<option value="${value}"${value === "24h" ? " selected" : ""}>${label}</option>`).join("");
    const figures = CHARTS.map(([name, title, about]) => `
      <figure class="analytics__chart" data-chart="${name}" data-points="0">
        <figcaption><strong>${title}</strong> <span class="muted">${about}</span></figcaption>
        <div class="analytics__plot" aria-hidden="true"></div>
        <p class="analytics__text visually-hidden"></p>
        <p class="analytics__empty muted" hidden>Nothing in this window yet.</p>
      </figure>`).join("");
    return `
      <dialog class="analytics-view" aria-labelledby="analytics-title">
        <header class="dialog__header">
          <h2 id="analytics-title">Analytics</h2>
          <label class="analytics__window">Show
            <select name="since"><option value="" hidden></option>${options}</select>
          </label>
          <button type="button" data-action="refresh">Refresh</button>
          <button type="button" class="close" data-action="close" aria-label="Close">✕</button>
        </header>
        <div class="dialog__body">
          <p class="analytics__status muted" aria-live="polite"></p>
          <ul class="analytics__totals"></ul>
          <div class="analytics__charts">${figures}
            <figure class="analytics__chart" data-chart="failures">
              <figcaption><strong>Failures by reason</strong> <span class="muted">The latest message of each.</span></figcaption>
              <table class="analytics__failures">
                <thead><tr><th scope="col">Reason</th><th scope="col">Jobs</th><th scope="col">Latest message</th></tr></thead>
                <tbody></tbody>
              </table>
              <p class="analytics__empty muted" hidden>No failures in this window.</p>
            </figure>
          </div>
        </div>
      </dialog>`;
  }

  setUp() {
    this._plots = [];
    this._request = 0;
    this._report = null;
    this.select = this.querySelector("select");
    this.select.addEventListener("change", () => this.load());
    this.charts = this.querySelector(".analytics__charts");
    store.on("change", (changed) => this._onChange(changed));
    // Theme colours are read when drawing: redraw when the theme changes.
    const redraw = () => this._report && this.dialog.open && this._render(this._report);
    new MutationObserver(redraw).observe(document.documentElement, { attributeFilter: ["data-theme"] });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
    this._resize = new ResizeObserver(() => {
      for (const { plot, target } of this._plots) {
        const width = Math.floor(target.clientWidth);
        if (width > 0 && width !== plot.width) plot.setSize({ width, height: plot.height });
      }
    });
  }

  /** Opens on the window given (`since`: an ISO time, e.g. a batch's start) or the one chosen
   * last. */
  open({ since } = {}) {
    if (since) {
      const custom = this.select.options[0];
      custom.value = since;
      custom.textContent = `Since ${dateTime(since)}`;
      custom.hidden = false;
      this.select.value = since;
    }
    this.show();
    this.load();
  }

  onAction(action) {
    if (action === "refresh") this.load();
  }

  closed() {
    this._clear();
  }

  async load() {
    const request = ++this._request;
    const status = this.querySelector(".analytics__status");
    this.setAttribute("aria-busy", "true");
    try {
      const report = await api.analytics(this.select.value);
      if (request !== this._request || !this.dialog.open) return;
      status.textContent = `${dateTime(report.since)} to ${dateTime(report.until)}`;
      this._report = report;
      this._render(report);
    } catch (error) {
      if (request !== this._request) return;
      // No charts of another window under a message about this one.
      this._report = null;
      this._clear();
      this.charts.hidden = true;
      this.querySelector(".analytics__totals").replaceChildren();
      status.textContent = `Could not load analytics: ${error.message}`;
    } finally {
      if (request === this._request) this.removeAttribute("aria-busy");
    }
  }

  _render(report) {
    this._clear();
    this.charts.hidden = false;
    const colours = themeColours();
    const { totals, eta } = report;
    const facts = [
      ["completed", `${totals.completed} completed`],
      ["failed", `${totals.failed} failed`],
      ["cancelled", `${totals.cancelled} cancelled`],
      ["", `typical wait ${duration(report.queue_wait.overall.median)}`],
      ["", eta.jobs ? `ETAs typically ${Math.round(eta.median_error * 100)} % off` +
        ` (${eta.mean_bias < 0 ? "short" : "long"} by ${Math.round(Math.abs(eta.mean_bias) * 100)} % on average)` : ""],
    ];
    this.querySelector(".analytics__totals").innerHTML = facts.filter(([, text]) => text)
      .map(([kind, text]) => `<li class="count" data-status="${kind}">${escapeHtml(text)}</li>`).join("");
    const { sizes } = report;
    const charts = {
      hours: report.hours.some((h) => h.completed || h.failed) ? hoursChart(report.hours, colours) : null,
      stages: report.stages.length
        ? spreadChart("Stage", report.stages.map((s) => s.stage), report.stages, colours) : null,
      sizes: sizes.length ? spreadChart("Size", sizes.map((s) => s.label), sizes, colours) : null,
      wait: report.queue_wait.hours.length ? waitChart(report.queue_wait.hours, colours) : null,
      eta: eta.points.length ? etaChart(eta.points, colours) : null,
    };
    for (const [name, chart] of Object.entries(charts)) {
      const figure = this.querySelector(`[data-chart="${name}"]`);
      const target = figure.querySelector(".analytics__plot");
      figure.querySelector(".analytics__empty").hidden = Boolean(chart);
      target.hidden = !chart;
      // How many non-zero values the chart shows (tests and tools read it); the text beside
      // the canvas says them in words for screen readers.
      figure.dataset.points = chart
        ? String(chart.data.slice(1).flat().filter((v) => v !== null && v !== 0).length) : "0";
      figure.querySelector(".analytics__text").textContent = chart ? describe(chart) : "";
      if (!chart) continue;
      this._plots.push({ plot: draw(target, chart), target });
      this._resize.observe(target);
    }
    this._renderFailures(report.failures);
  }

  _renderFailures(failures) {
    const figure = this.querySelector('[data-chart="failures"]');
    figure.querySelector("table").hidden = !failures.length;
    figure.querySelector(".analytics__empty").hidden = failures.length > 0;
    figure.querySelector("tbody").innerHTML = failures.map((f) => `
      <tr><th scope="row"><code>${escapeHtml(f.code)}</code></th><td>${f.count}</td>
        <td class="analytics__message">${escapeHtml(f.message)}</td></tr>`).join("");
  }

  _clear() {
    this._resize?.disconnect();
    for (const { plot } of this._plots) plot.destroy();
    this._plots = [];
  }

  _onChange(changed) {
    if (!this.dialog?.open || !changed.jobs.size) return;
    const ended = [...changed.jobs].some((id) => ENDED.has(store.jobs.get(id)?.status));
    if (!ended) return;
    clearTimeout(this._refresh);
    this._refresh = setTimeout(() => this.load(), 1000);
  }
}

customElements.define("analytics-view", AnalyticsView);
