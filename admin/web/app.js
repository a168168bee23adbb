// The admin page: everything through the admin API with the bearer token kept in
// sessionStorage. No build step, no framework.
"use strict";
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("tickwork-token") || "";
let shownJob = null;

function text(value) { return value === null || value === undefined ? "—" : String(value); }
function when(iso) { return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + "Z" : "—"; }
function cell(row, content) { const td = row.insertCell(); td.textContent = content; return td; }
function badge(td, status) {
  td.textContent = "";
  if (!status) { td.textContent = "—"; return; }
  const span = document.createElement("span");
  span.className = "status " + status; span.textContent = status; td.appendChild(span);
}

async function api(method, path, body, extraHeaders) {
  const response = await fetch(path, {
    method, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(extraHeaders || {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { logout("Your token was refused: log in again."); throw new Error("401"); }
  const data = await response.json();
  if (!response.ok) { throw new Error(data.detail ? JSON.stringify(data.detail) : response.statusText); }
  return data;
}

function logout(message) {
  token = ""; sessionStorage.removeItem("tickwork-token");
  $("#app").hidden = true; $("#login").hidden = false;
  for (const id of ["#logout", "#hold-btn", "#release-btn"]) $(id).hidden = true;
  $("#error").textContent = message || "";
}

async function refresh() {
  try {
    const [jobs, health, dead] = await Promise.all([
      api("GET", "/api/jobs"), fetch("/health").then((r) => r.json()), api("GET", "/api/dead-letters"),
    ]);
    $("#held").style.display = health.held ? "block" : "none";
    $("#hold-btn").hidden = !!health.held; $("#release-btn").hidden = !health.held;
    const body = $("#jobs tbody"); body.textContent = "";
    for (const job of jobs) {
      const row = body.insertRow(); row.dataset.job = job.name;
      if (!job.enabled) row.className = "disabled";
      const name = cell(row, job.name); name.title = job.description;
      const schedule = cell(row, job.schedule_words + (job.enabled ? "" : " (disabled)"));
      workflowLines(schedule, job);
      cell(row, when(job.next_run));
      const last = cell(row, ""); badge(last, job.last_status);
      cell(row, when(job.last_success));
      const actions = row.insertCell();
      button(actions, "Run now", () => runNow(job.name, {}));
      button(actions, "Run with…", async () => {
        const typed = prompt(`Arguments for ${job.name}, as JSON (e.g. {"source": "A"})`, "{}");
        if (typed === null) return;
        let args;
        try { args = JSON.parse(typed); } catch (e) { throw new Error("arguments: not JSON: " + e.message); }
        await runNow(job.name, args);
      });
      if (job.schedule || job.entries.length) {
        button(actions, "Backfill…", async () => {
          const from = prompt("Backfill from (exclusive), ISO 8601 with a zone, e.g. 2026-11-30T00:00Z");
          if (!from) return;
          const to = prompt("to (inclusive)", new Date().toISOString().slice(0, 16) + "Z");
          if (!to) return;
          const done = await api("POST", `/api/jobs/${job.name}/backfill`, { start: from, end: to });
          $("#note").textContent = `backfill of ${job.name}: queued ${done.run_ids.length} run(s)`;
          await showHistory(job.name);
        });
      }
      button(actions, job.enabled ? "Disable" : "Enable", async () => {
        await api("POST", `/api/jobs/${job.name}/${job.enabled ? "disable" : "enable"}`); await refresh();
      });
      button(actions, "History", () => showHistory(job.name));
    }
    // Dead letters: the workers' rows and the broker's dead-letter queues, one list.
    const deadBody = $("#dead tbody"); deadBody.textContent = "";
    $("#dead-count").textContent = dead.length ? `(${dead.length})` : "";
    $("#dead-actions").hidden = dead.length === 0;
    for (const letter of dead) {
      const row = deadBody.insertRow(); row.dataset.deadLetter = letter.id;
      cell(row, letter.queue_name); cell(row, letter.actor_name); cell(row, letter.message_id);
      cell(row, letter.reason); cell(row, when(letter.created_at));
      button(row.insertCell(), "Replay", async () => { await api("POST", `/api/dead-letters/${letter.id}/replay`); await refresh(); });
    }
    if (shownJob) await showHistory(shownJob, false);
    $("#error").textContent = "";
  } catch (error) { if (error.message !== "401") $("#error").textContent = error.message; }
}

function button(parent, label, action) {
  const b = document.createElement("button"); b.textContent = label;
  b.addEventListener("click", async () => {
    if (b.disabled) return;
    b.disabled = true;  // a double click sends one request
    try { await action(); } catch (e) { $("#error").textContent = e.message; } finally { b.disabled = false; }
  });
  parent.appendChild(b);
}

// Run now; the idempotency key makes a retried request queue one run.
async function runNow(name, args) {
  const key = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
  await api("POST", `/api/jobs/${name}/trigger`, { args }, { "Idempotency-Key": key });
  await showHistory(name);
}

// Chains, more schedule entries and policies, under the schedule (docs/WORKFLOWS.md).
function workflowLines(td, job) {
  const lines = [];
  for (const entry of job.entries) {
    const args = Object.keys(entry.args).length ? " " + JSON.stringify(entry.args) : "";
    lines.push(`entry ${entry.name}: ${entry.schedule_words}${args}`);
  }
  if (job.then.length) lines.push("then → " + job.then.join(", "));
  if (job.overlap !== "skip") lines.push("overlap: " + job.overlap);
  if (job.interval_from === "last_start") lines.push("interval counted from the last start");
  if (job.pause_after_failures) {
    lines.push(`pauses after ${job.pause_after_failures} failures in a row (${job.consecutive_failures} now)`);
  }
  if (!job.enabled && job.disabled_reason) lines.push(job.disabled_reason);
  for (const line of lines) {
    const div = document.createElement("div"); div.className = "workflow"; div.textContent = line; td.appendChild(div);
  }
}

// A run with its chain: the run that queued it and the runs it queued.
async function showChain(runId) {
  const run = await api("GET", `/api/runs/${runId}`);
  const box = $("#chain"); box.hidden = false; box.textContent = "";
  const title = document.createElement("h2"); title.textContent = `Run #${run.id} of ${run.job_name}: chain`;
  box.appendChild(title);
  const list = document.createElement("ul");
  const item = (label, r) => {
    const li = document.createElement("li"); li.dataset.chainRun = r.id;
    li.textContent = `${label}: #${r.id} ${r.job_name} (${r.trigger}) `;
    const span = document.createElement("span"); span.className = "status " + r.status; span.textContent = r.status;
    li.appendChild(span); list.appendChild(li);
  };
  if (run.parent) item("queued by", run.parent);
  item("this run", run);
  for (const child of run.children) item("queued", child);
  if (!run.parent && !run.children.length) {
    const li = document.createElement("li"); li.textContent = "no chain: nothing queued it, it queued nothing"; list.appendChild(li);
  }
  box.appendChild(list);
}

async function showHistory(name, reload = true) {
  shownJob = name;
  const runs = await api("GET", `/api/jobs/${name}/runs?limit=20`);
  $("#history-title").hidden = false; $("#history").hidden = false;
  $("#history-title").textContent = `Runs of ${name}`;
  const body = $("#history tbody"); body.textContent = "";
  for (const run of runs) {
    const row = body.insertRow(); row.dataset.run = run.id;
    const id = cell(row, ""); const link = document.createElement("a");
    link.href = "#"; link.textContent = "#" + run.id; link.title = "show its chain";
    link.addEventListener("click", (e) => { e.preventDefault(); showChain(run.id).catch((err) => { $("#error").textContent = err.message; }); });
    id.appendChild(link);
    let trigger = run.trigger;
    if (run.entry) trigger += ` (entry ${run.entry})`;
    if (run.triggered_by) trigger += ` after #${run.triggered_by}`;
    if (run.args && Object.keys(run.args).length) trigger += " " + JSON.stringify(run.args);
    cell(row, trigger);
    badge(row.insertCell(), run.status);
    cell(row, when(run.scheduled_for)); cell(row, when(run.finished_at)); cell(row, text(run.records_processed));
    const out = row.insertCell(); const pre = document.createElement("pre");
    pre.textContent = [run.output, run.error, run.skip_reason].filter(Boolean).join("\n"); out.appendChild(pre);
  }
  if (reload) await refresh();
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("tickwork-token", token);
  await start();
});
$("#logout").addEventListener("click", () => logout(""));
$("#hold-btn").addEventListener("click", async () => { await api("POST", "/api/hold"); await refresh(); });
$("#release-btn").addEventListener("click", async () => { await api("POST", "/api/release", { mode: "run-missed" }); await refresh(); });
$("#dead-replay-all").addEventListener("click", async () => {
  try { const r = await api("POST", "/api/dead-letters/replay"); $("#dead-note").textContent = `replayed ${r.count}`; await refresh(); }
  catch (e) { $("#error").textContent = e.message; }
});
$("#dead-purge").addEventListener("click", async () => {
  if (!confirm("Delete every dead letter?")) return;
  try { const r = await api("DELETE", "/api/dead-letters"); $("#dead-note").textContent = `purged ${r.count}`; await refresh(); }
  catch (e) { $("#error").textContent = e.message; }
});

async function start() {
  if (!token) return;
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  await refresh();
}
setInterval(() => { if (token) refresh(); }, 3000);
start();
