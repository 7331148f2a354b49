// dstack dashboard: line charts of metrics, drawn as inline SVG (no library).
// lineChart(title, xLabel, series, legend, width) returns an <svg class="chart">: axes with a few
// round ticks, one line per series (one colour each), the last value printed, and a legend
// of the series with their last values when there are several (or when `legend` asks).
// series: [{label, points: [[x, y], ...]}], points in the order written.
"use strict";

const CHART_COLORS = ["#2f5bd3", "#d1495b", "#2f9e50", "#8e44ad", "#c08a12", "#0a8a8a",
  "#b83280", "#5b6376", "#e07a1f", "#1f6f8b", "#6a994e", "#9d4edd"];
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 600, height: 250, left: 62, right: 18, top: 34, bottom: 40 };
const MAX_DRAWN = 1500; // points drawn per line; more are thinned (the last one always kept)

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Short numbers for ticks and values: 4 significant digits, no trailing zeros.
function formatNumber(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1e5 || size < 1e-3) return value.toExponential(2).replace(/\.?0+e/, "e");
  return String(Number(value.toPrecision(4)));
}

// About `count` round tick values covering [low, high] (1, 2 or 5 times a power of ten apart).
function niceTicks(low, high, count) {
  if (!(high > low)) {
    const pad = Math.abs(low) * 0.1 || 1;
    low -= pad;
    high += pad;
  }
  const rough = (high - low) / count;
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
  const first = Math.floor(low / step) * step;
  const last = Math.ceil(high / step) * step;
  const ticks = [];
  for (let i = 0; first + i * step <= last + step * 1e-9 && i < 50; i++) {
    ticks.push(Number((first + i * step).toPrecision(12)));
  }
  return ticks;
}

// Where a point is, said in words: "at step 40", "at 12.5 s".
function where(xLabel, x) {
  return xLabel === "seconds" ? `at ${formatNumber(x)} s` : `at ${xLabel} ${formatNumber(x)}`;
}

function thinned(points) {
  if (points.length <= MAX_DRAWN) return points;
  const every = Math.ceil(points.length / MAX_DRAWN);
  const kept = points.filter((_, index) => index % every === 0);
  if (kept[kept.length - 1] !== points[points.length - 1]) kept.push(points[points.length - 1]);
  return kept;
}

function lineChart(title, xLabel, series, legend, width = CHART.width) {
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const legendRows = series.length > 1 || legend ? Math.ceil(series.length / 2) : 0;
  const height = CHART.height + (legendRows ? legendRows * 18 + 6 : 0);
  const plotW = width - CHART.left - CHART.right;
  const plotH = CHART.height - CHART.top - CHART.bottom;
  const sx = (x) => CHART.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y) => CHART.top + plotH - ((y - y0) / (y1 - y0)) * plotH;
  const svg = svgElement("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, width,
    height, role: "img", "data-metric": title, "data-points": String(all.length),
  });
  svg.appendChild(svgElement("title", {}, `${title} by ${xLabel}`));
  svg.appendChild(svgElement("text", { class: "chart-title", x: CHART.left, y: 18 }, title));
  if (series.length === 1 && !legend) {
    const last = series[0].points[series[0].points.length - 1];
    svg.appendChild(svgElement("text", { class: "chart-last", x: width - CHART.right, y: 18,
      "text-anchor": "end" }, `last ${formatNumber(last[1])} ${where(xLabel, last[0])}`));
  }
  const axes = svgElement("g", { class: "axes" });
  for (const tick of yTicks) {
    axes.appendChild(svgElement("line", { class: "grid", x1: CHART.left, x2: CHART.left + plotW,
      y1: sy(tick), y2: sy(tick) }));
    axes.appendChild(svgElement("text", { class: "tick", x: CHART.left - 6, y: sy(tick) + 4,
      "text-anchor": "end" }, formatNumber(tick)));
  }
  for (const tick of xTicks) {
    axes.appendChild(svgElement("line", { class: "mark", x1: sx(tick), x2: sx(tick),
      y1: CHART.top + plotH, y2: CHART.top + plotH + 4 }));
    axes.appendChild(svgElement("text", { class: "tick", x: sx(tick), y: CHART.top + plotH + 16,
      "text-anchor": "middle" }, formatNumber(tick)));
  }
  axes.appendChild(svgElement("line", { class: "axis", x1: CHART.left, x2: CHART.left + plotW,
    y1: CHART.top + plotH, y2: CHART.top + plotH }));
  axes.appendChild(svgElement("line", { class: "axis", x1: CHART.left, x2: CHART.left,
    y1: CHART.top, y2: CHART.top + plotH }));
  axes.appendChild(svgElement("text", { class: "axis-label", x: CHART.left + plotW / 2,
    y: CHART.top + plotH + 32, "text-anchor": "middle" }, xLabel));
  svg.appendChild(axes);
  series.forEach((line, index) => {
    const color = CHART_COLORS[index % CHART_COLORS.length];
    const drawn = thinned(line.points).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    const group = svgElement("g", { class: "series", "data-label": line.label,
      "data-points": String(line.points.length) });
    group.appendChild(svgElement("polyline", { points: drawn.join(" "), stroke: color }));
    const last = line.points[line.points.length - 1];
    group.appendChild(svgElement("circle", { cx: sx(last[0]), cy: sy(last[1]), r: 3, fill: color }));
    svg.appendChild(group);
    if (legendRows) {
      const row = Math.floor(index / 2);
      const x = CHART.left + (index % 2) * (plotW / 2);
      const y = CHART.height + 12 + row * 18;
      const item = svgElement("g", { class: "legend-item" });
      item.appendChild(svgElement("rect", { x, y: y - 9, width: 14, height: 4, fill: color }));
      item.appendChild(svgElement("text", { class: "legend", x: x + 20, y: y - 4 },
        `${line.label}: ${formatNumber(last[1])}`));
      svg.appendChild(item);
    }
  });
  return svg;
}

// Points of a run (as /run/metrics sends them) as one chart per metric: x is the step when
// every point of that metric has one, else seconds since the run's first point; a line per
// job and attempt when there are several.
function runCharts(points) {
  const start = points.length ? points[0].at : 0;
  const keys = new Set(points.map((p) => `${p.job}/${p.attempt}`));
  const jobs = new Set(points.map((p) => p.job));
  const names = [...new Set(points.flatMap((p) => Object.keys(p.values)))].sort();
  return names.map((name) => {
    const having = points.filter((p) => name in p.values);
    const byStep = having.every((p) => p.step !== null && p.step !== undefined);
    const lines = new Map();
    for (const p of having) {
      const key = `${p.job}/${p.attempt}`;
      if (!lines.has(key)) {
        const label = jobs.size > 1 ? `job ${p.job} · attempt ${p.attempt}` : `attempt ${p.attempt}`;
        lines.set(key, { label, points: [] });
      }
      lines.get(key).points.push([byStep ? p.step : p.at - start, p.values[name]]);
    }
    const series = keys.size > 1 ? [...lines.values()] : [...lines.values()].map((l) => ({ ...l, label: name }));
    return { name, chart: lineChart(name, byStep ? "step" : "seconds", series) };
  });
}
