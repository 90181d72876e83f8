// The status page: fetch /admin/status every 2 s and redraw. Data goes in with textContent only.
"use strict";

const REFRESH_MS = 2000;
let previous = null; // {time, done} of the last poll, for jobs per second

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function ago(ts, now) {
  if (!ts) return "-";
  const s = Math.max(0, now - ts);
  if (s < 120) return `${s.toFixed(0)}s ago`;
  if (s < 7200) return `${(s / 60).toFixed(0)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

function seconds(s) {
  if (s < 60) return `${s.toFixed(1)}s`;
  if (s < 3600) return `${(s / 60).toFixed(1)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

function fillBody(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function renderQueues(queues) {
  fillBody("queues", queues.map((q) => el("tr", { "data-queue": q.name.split(":").pop() },
    el("td", {}, q.name),
    el("td", { class: "num" }, q.queued),
    el("td", { class: "num" }, q.deferred),
    el("td", { class: "num" }, q.in_progress),
    el("td", { class: "num" }, seconds(q.oldest_age_s)))));
}

function renderThroughput(report) {
  const totals = report.jobs_total || {};
  const done = Object.values(totals).reduce((a, b) => a + b, 0);
  const node = document.getElementById("throughput");
  if (previous && report.time > previous.time) {
    const rate = Math.max(0, done - previous.done) / (report.time - previous.time);
    node.textContent = rate.toFixed(rate < 10 ? 1 : 0);
  }
  previous = { time: report.time, done };
}

function renderSyncs(syncs, now) {
  const box = document.getElementById("full-syncs");
  if (!syncs.length) {
    box.replaceChildren(el("p", { class: "muted" }, "none yet"));
    return;
  }
  box.replaceChildren(...syncs.map((s) => {
    const total = Number(s.total);
    const seen = Number(s.seen || 0);
    const pct = total > 0 ? Math.min(100, (100 * seen) / total) : 0;
    const fill = el("div", { class: "fill" });
    fill.style.width = `${pct.toFixed(1)}%`;
    const state = String(s.state || "");
    return el("div", { class: "sync", "data-sync-id": s.sync_id || "" },
      el("div", { class: "title" },
        el("span", { class: `state ${state}` }, state),
        el("span", {}, s.shop || ""),
        el("span", { class: "muted" }, `${s.sync_id || ""} · started ${ago(s.started_at, now)}`)),
      el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                  "aria-valuenow": pct.toFixed(1) }, fill),
      el("div", { class: "counts" },
        `${seen} / ${Number.isFinite(total) ? total : "?"} (${pct.toFixed(1)}%) · synced ${s.synced || 0}` +
        ` · unchanged ${s.unchanged || 0} · skipped ${s.skipped || 0} · failed ${s.failed || 0}`));
  }));
}

function renderFailures(failures, now) {
  fillBody("recent-failures", failures.slice(0, 20).map((f) => el("tr", {},
    el("td", {}, ago(f.at, now)),
    el("td", {}, f.job_id || ""),
    el("td", {}, f.function || ""),
    el("td", { class: "num" }, f.try ?? ""),
    el("td", { class: "error", title: f.error || "" }, f.error || ""))));
}

function renderLimiters(limiters) {
  fillBody("limiters", Object.keys(limiters).sort().map((name) => {
    const value = limiters[name];
    return el("tr", {}, el("td", {}, name),
      el("td", {}, typeof value === "string" ? value : JSON.stringify(value)));
  }));
}

function render(report) {
  const now = report.time;
  document.getElementById("workers").textContent = report.workers_alive.length;
  document.getElementById("failures").textContent = report.failures_last_hour;
  document.getElementById("dead-letters").textContent = report.dead_letters.total;
  renderQueues(report.queues);
  renderThroughput(report);
  renderSyncs(report.full_syncs, now);
  renderFailures(report.recent_failures, now);
  renderLimiters(report.limiters || {});
  const updated = document.getElementById("updated");
  updated.textContent = `updated ${new Date(now * 1000).toLocaleTimeString()}`;
  updated.className = "muted";
}

async function poll() {
  try {
    const response = await fetch("/admin/status", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      window.location.assign("/admin");
      return;
    }
    if (!response.ok) throw new Error(`status ${response.status}`);
    render(await response.json());
  } catch (error) {
    const updated = document.getElementById("updated");
    updated.textContent = `not updating: ${error.message}`;
    updated.className = "stale";
  } finally {
    setTimeout(poll, REFRESH_MS);
  }
}

poll();
