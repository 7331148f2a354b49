// dstack dashboard: the few things a server-rendered page cannot do alone.
"use strict";

const STATUS_CLASS = {
  submitted: "pending", provisioning: "pending", downloading: "active", running: "active",
  uploading: "active", stopping: "warn", done: "ok", failed: "bad", stopped: "warn",
  aborted: "bad", interrupted: "bad",
};

function setStatus(element, status) {
  if (!element) return;
  element.textContent = status;
  element.className = "status status-" + (STATUS_CLASS[status] || "pending");
}

// Stop and Restart ask first; the server refuses either when it was not confirmed.
function wireConfirmed(selector, busy) {
  const form = document.querySelector(selector);
  if (!form) return;
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    form.elements.confirm.value = "yes";
    const button = form.querySelector("button");
    button.textContent = busy;
    setTimeout(() => { button.disabled = true; }); // once posted: a second click posts nothing
  });
}

// The runs table refreshes itself while any run on the page is unfinished.
function wireRunsRefresh() {
  const holder = document.getElementById("runs");
  if (!holder) return;
  const tick = async () => {
    const table = document.getElementById("runs-table");
    if (!table || table.dataset.active !== "1") return;
    try {
      const response = await fetch(holder.dataset.refresh, { credentials: "same-origin" });
      if (response.ok) {
        const picked = [...holder.querySelectorAll("input[name=run]:checked")].map((i) => i.value);
        holder.innerHTML = await response.text();
        for (const input of holder.querySelectorAll("input[name=run]")) {
          input.checked = picked.includes(input.value);
        }
      }
    } catch (error) { /* the next tick tries again */ }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}

// A run's output, live: server-sent events of HTML the server made from the stored log.
function wireLogs() {
  const run = document.getElementById("run");
  if (!run) return;
  const state = document.getElementById("log-state");
  const statuses = {};
  const source = new EventSource(run.dataset.logs);
  source.addEventListener("reset", () => {
    document.querySelectorAll("pre.log").forEach((pre) => { pre.innerHTML = ""; });
    state.textContent = "following the output…";
  });
  source.addEventListener("log", (event) => {
    const data = JSON.parse(event.data);
    const pre = document.getElementById("log-" + data.job);
    if (!pre) return;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.insertAdjacentHTML("beforeend", data.html);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    statuses[data.job] = data.status;
    setStatus(document.querySelector(`[data-job-status="${data.job}"]`), data.status);
    const values = Object.values(statuses);
    const unfinished = values.find((s) => !["done", "failed", "stopped", "aborted", "interrupted"].includes(s));
    setStatus(document.getElementById("run-status"), unfinished || values.find((s) => s !== "done") || "done");
  });
  source.addEventListener("end", () => {
    source.close();
    state.textContent = "the run has finished";
    if (run.dataset.active === "1") setTimeout(() => window.location.reload(), 800);
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) state.textContent = "reconnecting…";
  };
}

// The metric column's choices: the metrics of the runs on this page, asked once.
async function wireMetricColumn() {
  const select = document.getElementById("metric-column");
  const form = document.getElementById("compare");
  if (!select || !form) return;
  const runs = [...document.querySelectorAll("#runs-table tr[data-run]")].map((r) => r.dataset.run);
  if (!runs.length) return;
  const query = runs.map((run) => "&run=" + encodeURIComponent(run)).join("");
  try {
    const response = await fetch(form.dataset.names + query, { credentials: "same-origin" });
    if (!response.ok) return;
    const known = new Set([...select.options].map((o) => o.value));
    for (const name of (await response.json()).metrics) {
      if (!known.has(name)) select.appendChild(new Option(name, name));
    }
    select.dataset.loaded = "1";
  } catch (error) { /* the column stays as it is */ }
}

// The run page's charts, live: the points the server has after those already drawn, every
// second until the run has finished (the last answer then holds every point).
function wireMetrics() {
  const holder = document.getElementById("metrics");
  if (!holder) return;
  const state = document.getElementById("metrics-state");
  const points = [];
  let after = 0;
  const draw = () => {
    const figures = new Map([...holder.querySelectorAll("figure.chart")].map((f) => [f.dataset.metric, f]));
    for (const { name, chart } of runCharts(points)) {
      let figure = figures.get(name);
      if (!figure) {
        figure = document.createElement("figure");
        figure.className = "chart";
        figure.dataset.metric = name;
        holder.appendChild(figure);
      }
      figure.replaceChildren(chart);
    }
  };
  const poll = async () => {
    let finished = false;
    try {
      const response = await fetch(`${holder.dataset.url}&after=${after}`, { credentials: "same-origin" });
      if (response.status === 404 || response.status === 401) {
        state.textContent = "the metrics cannot be read: reload the page";
        return;
      }
      if (!response.ok) { // the store did not answer: try again a little later
        state.textContent = "the metrics cannot be read now; trying again…";
        setTimeout(poll, 3000);
        return;
      }
      const data = await response.json();
      finished = data.finished;
      if (data.replace && data.points.length !== points.length) { // all of a run of several jobs
        points.splice(0, points.length, ...data.points);
        draw();
      } else if (!data.replace && data.points.length) {
        points.push(...data.points);
        after = data.next;
        draw();
      }
      if (points.length) state.textContent = finished ? "" : "following the metrics…";
      else state.textContent = finished ? "No metrics: a job writes them as JSON lines to the file named by $DSTACK_METRICS." : "no metrics yet";
      holder.dataset.finished = finished ? "1" : "0";
    } catch (error) { /* the next poll tries again */ }
    if (!finished) setTimeout(poll, 1000);
  };
  poll();
}

// The compare view: one chart, its data in the page.
function wireCompare() {
  const data = document.getElementById("compare-data");
  const holder = document.getElementById("compare-chart");
  if (!data || !holder) return;
  const found = JSON.parse(data.textContent);
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = found.metric;
  figure.appendChild(lineChart(found.metric, found.xLabel, found.series, true, 900));
  holder.appendChild(figure);
}

document.addEventListener("DOMContentLoaded", () => {
  wireConfirmed("form.stop", "Stopping…");
  wireConfirmed("form.restart", "Restarting…");
  wireRunsRefresh();
  wireLogs();
  wireMetricColumn();
  wireMetrics();
  wireCompare();
});
