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
    form.querySelector("button").textContent = busy;
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
      if (response.ok) holder.innerHTML = await response.text();
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

document.addEventListener("DOMContentLoaded", () => {
  wireConfirmed("form.stop", "Stopping…");
  wireConfirmed("form.restart", "Restarting…");
  wireRunsRefresh();
  wireLogs();
});
