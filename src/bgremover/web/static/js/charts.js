// Chart builders for the analytics view, on uPlot (vendored in /static/vendor/uplot).
// Colours come from the theme's CSS custom properties, read when a chart is drawn; uPlot
// sets its sizes and colours through element.style (CSSOM), which the page's
// Content-Security-Policy allows, and draws everything else on a canvas.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { time } from "./format.js";

const HOUR_LABEL = new Intl.DateTimeFormat([], { hour: "numeric", minute: "2-digit" });
const DAY_LABEL = new Intl.DateTimeFormat([], { month: "short", day: "numeric" });
const DAY = 24 * 3600;
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/** The theme's colours now (light or dark), by the names the charts use. */
export function themeColours() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    fg: read("--fg"), muted: read("--muted"), border: read("--border"),
    completed: read("--status-completed"), failed: read("--status-failed"),
    median: read("--chart-median"), p90: read("--chart-p90"),
    predicted: read("--chart-predicted"), actual: read("--chart-actual"),
  };
}

/** Seconds for people, precise enough for stages that take milliseconds. */
export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${(s / 60).toFixed(1)} min`;
}

/** Tick labels in the browser's locale: days when ticks are a day or more apart, times to
 *  the minute, or to the second when they are less than a minute apart. */
function timeLabels(splits, step) {
  if (step < 60) return splits.map((s) => time(new Date(s * 1000).toISOString()));
  const format = step >= DAY ? DAY_LABEL : HOUR_LABEL;
  return splits.map((s) => format.format(new Date(s * 1000)));
}

function axis(colours, extra = {}) {
  return {
    stroke: colours.muted,
    grid: { stroke: colours.border, width: 1 },
    ticks: { stroke: colours.border, width: 1 },
    ...extra,
  };
}

function valueAxis(colours, format) {
  return axis(colours, { size: 64, values: (u, splits) => splits.map(format) });
}

function timeAxis(colours) {
  return axis(colours, {
    grid: { show: false },
    space: 80,
    values: (u, splits, axisIndex, space, step) => timeLabels(splits, step),
  });
}

/** A time scale from the first to the last x, padded by `pad` seconds each side so bars and
 *  points at its ends show whole (uPlot would stretch a single x to a whole day). */
function paddedTime(pad) {
  return {
    time: true,
    range: (u) => [u.data[0][0] - pad, u.data[0][u.data[0].length - 1] + pad],
  };
}

// The x series of hourly charts, whose x is the middle of each hour: the legend names the hour.
const HOUR_SERIES = {
  label: "Hour", value: (u, v) => (v == null ? "–" : HOUR_LABEL.format(new Date((v - 1800) * 1000))),
};

const fromZero = { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] };

function bars(k, count) {
  // Two series sit side by side around their x: the first left of it, the second right.
  const align = count === 1 ? 0 : k === 0 ? -1 : 1;
  return uPlot.paths.bars({ size: [count === 1 ? 0.6 : 0.35, 48], align });
}

function barSeries(label, colour, k, count, format) {
  return {
    label, stroke: colour, fill: colour, width: 0, paths: bars(k, count),
    points: { show: false }, value: (u, v) => (v == null ? "–" : format(v)),
  };
}

function pointSeries(label, colour, format, line) {
  return {
    label, stroke: colour, width: line ? 2 : 0, paths: line ? undefined : () => null,
    points: { show: true, size: 7, stroke: colour, fill: colour },
    value: (u, v) => (v == null ? "–" : format(v)),
  };
}

/** Completed and failed images per hour, as bars. */
export function hoursChart(hours, colours) {
  const x = hours.map((h) => Date.parse(h.hour) / 1000 + 1800); // the middle of each hour
  const count = (v) => (Number.isInteger(v) ? String(v) : "");
  return {
    data: [x, hours.map((h) => h.completed), hours.map((h) => h.failed)],
    options: {
      scales: { x: paddedTime(1800), y: fromZero },
      axes: [timeAxis(colours), axis(colours, { incrs: COUNT_STEPS, values: (u, s) => s.map(count) })],
      series: [
        HOUR_SERIES,
        barSeries("Completed", colours.completed, 0, 2, count),
        barSeries("Failed", colours.failed, 1, 2, count),
      ],
    },
  };
}

/** Median and 90th percentile per category (stages, image sizes), as paired bars. */
export function spreadChart(name, labels, spreads, colours) {
  const x = labels.map((_, i) => i);
  return {
    data: [x, spreads.map((s) => s.median), spreads.map((s) => s.p90)],
    options: {
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: fromZero },
      axes: [
        axis(colours, {
          grid: { show: false },
          splits: () => x,
          values: (u, splits) => splits.map((i) => labels[i] ?? ""),
        }),
        valueAxis(colours, duration),
      ],
      series: [
        { label: name, value: (u, v) => (v == null ? "–" : labels[v] ?? "") },
        barSeries("Median", colours.median, 0, 2, duration),
        barSeries("90th percentile", colours.p90, 1, 2, duration),
      ],
    },
  };
}

/** Median and 90th percentile of queue wait per hour the jobs started, as lines. */
export function waitChart(hours, colours) {
  return {
    data: [
      hours.map((h) => Date.parse(h.hour) / 1000 + 1800),
      hours.map((h) => h.median),
      hours.map((h) => h.p90),
    ],
    options: {
      scales: { x: paddedTime(1800), y: fromZero },
      axes: [timeAxis(colours), valueAxis(colours, duration)],
      series: [
        HOUR_SERIES,
        pointSeries("Median", colours.median, duration, true),
        pointSeries("90th percentile", colours.p90, duration, true),
      ],
    },
  };
}

/** Each completed job's predicted and actual run time, by when it ended. */
export function etaChart(points, colours) {
  const x = points.map((p) => Date.parse(p.end_time) / 1000);
  const span = x.length ? x[x.length - 1] - x[0] : 0;
  return {
    data: [x, points.map((p) => p.predicted), points.map((p) => p.actual)],
    options: {
      scales: { x: paddedTime(Math.max(30, span * 0.03)), y: fromZero },
      axes: [timeAxis(colours), valueAxis(colours, duration)],
      series: [
        { label: "Ended", value: (u, v) => (v == null ? "–" : time(new Date(v * 1000).toISOString())) },
        pointSeries("Predicted", colours.predicted, duration, false),
        pointSeries("Actual", colours.actual, duration, false),
      ],
    },
  };
}

/** The chart's values in words, one x at a time (those with any non-zero value), for screen
 *  readers: "AI model: Median 2.1 s, 90th percentile 2.4 s; …". */
export function describe(chart) {
  const [xs, ...columns] = chart.data;
  const [xSeries, ...series] = chart.options.series;
  return xs.map((x, i) => (columns.some((column) => column[i])
    ? `${xSeries.value(null, x)}: ${series.map((s, k) => `${s.label} ${s.value(null, columns[k][i])}`).join(", ")}`
    : "")).filter(Boolean).join("; ");
}

/** Draws `chart` ({data, options}) into `target`, sized to it; returns the uPlot instance. */
export function draw(target, chart, { height = 220 } = {}) {
  const width = Math.max(240, Math.floor(target.clientWidth || 400));
  return new uPlot({ width, height, legend: { live: true }, ...chart.options }, chart.data, target);
}
