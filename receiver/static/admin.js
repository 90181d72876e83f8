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
  for (const child of children) {
    if (child === null || child === undefined) continue; // an optional part left out
    node.append(child instanceof Node ? child : String(child));
  }
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
        s.parked ? el("span", { class: "muted" }, `parked: ${s.parked}`) : null,
        el("span", { class: "muted" }, `${s.sync_id || ""} · started ${ago(s.started_at, now)}`)),
      el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                  "aria-valuenow": pct.toFixed(1) }, fill),
      el("div", { class: "counts" },
        `${seen} / ${Number.isFinite(total) ? total : "?"} (${pct.toFixed(1)}%) · synced ${s.synced || 0}` +
        ` · unchanged ${s.unchanged || 0} · skipped ${s.skipped || 0} · failed ${s.failed || 0}`),
      ...importPhase(s.import_phase));
  }));
}

// A full sync through APSIS profile imports: where its files are (worker/fullsync/imports.py).
function importPhase(p) {
  if (!p) return [];
  return [el("div", { class: "counts import-phase" },
    `import: files ${p.files_built} built, ${p.files_uploaded} uploaded, ${p.files_processing} processing,` +
    ` ${p.files_completed} completed, ${p.files_failed} failed${p.verified ? " (verified)" : ""}` +
    ` · rows ${p.rows} imported, ${p.rows_resent} re-sent, ${p.rows_refused} refused`)];
}

function renderFailures(failures, now) {
  fillBody("recent-failures", failures.slice(0, 20).map((f) => el("tr", {},
    el("td", {}, ago(f.at, now)),
    el("td", {}, f.job_id || ""),
    el("td", {}, f.function || ""),
    el("td", { class: "num" }, f.try ?? ""),
    el("td", { class: "error", title: f.error || "" }, f.error || ""))));
}

function pace(rate) {
  return rate >= 1 ? `${rate.toFixed(0)}/s` : `${(rate * 60).toFixed(0)}/min`;
}

// A bucket's snapshot at its last acquire (worker/ratelimit/scripts.py): how full, its pace, the
// wait that acquire had and when it was; as `shopsync status` prints it.
function renderLimiters(limiters, now) {
  fillBody("limiters", Object.keys(limiters).sort().map((name) => {
    const v = limiters[name];
    if (typeof v !== "object" || v === null) return el("tr", {}, el("td", {}, name), el("td", {}, String(v)));
    return el("tr", { "data-bucket": name }, el("td", {}, name),
      el("td", { class: "num" }, `${Number(v.level || 0).toFixed(1)} / ${Number(v.burst || 0)}`),
      el("td", { class: "num" }, pace(Number(v.rate_per_s || 0))),
      el("td", { class: "num" }, `${Number(v.wait_s || 0).toFixed(2)}s`),
      el("td", { class: "num" }, ago(v.at, now)));
  }));
}

// One row per shop (core/shop_status.py): backlog, rate-limit use, backoff and last error.
// The last drift audit (worker/audit.py): red while it found differences.
function auditCell(a, now) {
  if (!a) return el("td", {}, "-");
  const drift = ["missing", "extra", "attribute", "consent"].reduce((n, k) => n + Number(a[k] || 0), 0);
  return el("td", drift ? { class: "bad" } : {},
    `${ago(a.at, now)}: ${a.customers || 0} customers, ${drift} difference(s)`);
}

function renderShops(shops, audits, suppressed, now) {
  fillBody("shops", Object.keys(shops).sort().map((name) => {
    const s = shops[name];
    const b = s.backlog || {};
    const limits = Object.keys(s.rate_limits || {}).sort()
      .filter((bucket) => typeof s.rate_limits[bucket] === "object")
      .map((bucket) => {
        const v = s.rate_limits[bucket];
        return `${bucket.split(":")[0]} ${Number(v.level || 0).toFixed(0)}/${Number(v.burst || 0)} @${pace(Number(v.rate_per_s || 0))}`;
      }).join(", ");
    const backoff = s.backoff && s.backoff.active
      ? `${Math.max(0, Number(s.backoff.until) - now).toFixed(0)}s more: ${s.backoff.reason || ""}` : "-";
    const e = s.last_error;
    const error = e ? `${ago(e.at, now)}: ${e.api || e.job || ""} ${e.status || e.error || ""}` : "-";
    return el("tr", { "data-shop": name },
      el("td", {}, s.in_installations === false ? `${name} (removed: parked)` : name),
      el("td", { class: "num" }, s.weight || "-"),
      el("td", { class: "num" }, `${(b.realtime || 0) + (b.apply || 0)}${b.sampled ? "+" : ""}`),
      el("td", { class: "num" }, b.fullsync_batches_ready ?? 0),
      el("td", { class: "num" }, b.fullsync_customers_left ?? "-"),
      el("td", { class: "num" }, b.held ?? 0),
      el("td", {}, limits || "-"),
      el("td", { class: s.backoff && s.backoff.active ? "bad" : "" }, backoff),
      el("td", e ? { class: "error", title: error } : {}, error),
      auditCell(audits[name], now),
      el("td", { class: "num" }, suppressed[name] ?? 0));
  }));
}

// A shop whose app needs approval again: its jobs wait until someone approves it.
function renderNeedsApproval(needs) {
  const box = document.getElementById("needs-approval");
  box.replaceChildren(...Object.keys(needs).sort().map((shop) => el("p", { class: "alert", "data-shop": shop },
    `${shop}: needs approval (${needs[shop]}): its jobs wait; approve the app again `,
    el("a", { href: `/auth/install?shop=${encodeURIComponent(shop)}` }, "(connect)"))));
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
  renderLimiters(report.limiters || {}, now);
  renderShops(report.shops || {}, report.audits || {}, report.suppressed_profiles || {}, now);
  renderNeedsApproval(report.needs_approval || {});
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
