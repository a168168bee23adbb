// The admin page: everything through the admin API with the bearer token kept in
// sessionStorage. No build step, no framework. It refreshes its tables every 3 s in
// place (no reload), keeping the keyboard focus; it shows only the controls the token's
// scope allows (the API enforces them anyway); times are in the viewer's zone.
"use strict";
const $ = (sel) => document.querySelector(sel);
const SCOPES = ["viewer", "operator", "admin"];
let token = sessionStorage.getItem("tickwork-token") || "";
let me = null; // {name, scope}
let shownJob = null;
let jobsByName = {};
let editing = null; // the job whose edit form is open

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hourCycle: "h23", timeZoneName: "short",
});

function allowed(scope) { return me !== null && SCOPES.indexOf(me.scope) >= SCOPES.indexOf(scope); }
function text(value) { return value === null || value === undefined ? "—" : String(value); }
function when(iso) { return iso ? TIME.format(new Date(iso)) : "—"; }
function cell(row, content, label) {
  const td = row.insertCell(); td.textContent = content;
  if (label) td.dataset.label = label;
  return td;
}
function timeCell(row, iso, label) {
  const td = row.insertCell(); if (label) td.dataset.label = label;
  if (!iso) { td.textContent = "—"; return td; }
  const t = document.createElement("time"); t.dateTime = iso; t.title = iso; t.textContent = when(iso);
  td.appendChild(t); return td;
}
function badge(td, status, iso) {
  td.textContent = "";
  if (!status) { td.textContent = "never"; return; }
  const span = document.createElement("span");
  span.className = "status " + status; span.textContent = status; td.appendChild(span);
  if (iso) {
    const t = document.createElement("time"); t.className = "at"; t.dateTime = iso; t.title = iso;
    t.textContent = when(iso); td.appendChild(t);
  }
}
function interval(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
}

async function api(method, path, body, extraHeaders) {
  const response = await fetch(path, {
    method, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(extraHeaders || {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { logout("Your token was refused: log in again."); throw new Error("401"); }
  const data = await response.json();
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(detail || response.statusText);
  }
  return data;
}

function logout(message) {
  token = ""; me = null; sessionStorage.removeItem("tickwork-token");
  $("#app").hidden = true; $("#login").hidden = false; $("#who").textContent = "";
  for (const id of ["#logout", "#hold-btn", "#release-btn"]) $(id).hidden = true;
  $("#error").textContent = message || "";
}

// A button with a stable key, so that the refresh can give the focus back to it.
function button(parent, label, key, action) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.dataset.key = key;
  b.addEventListener("click", async () => {
    // A double click sends one request. Marked busy rather than disabled: a disabled
    // button drops the keyboard focus, which the live refresh must give back.
    if (b.getAttribute("aria-busy") === "true") return;
    b.setAttribute("aria-busy", "true");
    $("#error").textContent = ""; delete $("#error").dataset.from;
    try { await action(); } catch (e) { if (e.message !== "401") showActionError(e.message); }
    finally { b.removeAttribute("aria-busy"); }
  });
  parent.appendChild(b);
  return b;
}

// An action's error stays until the operator's next action: marked so that a refresh
// (which clears only the errors it set itself) leaves it, even one that failed meanwhile.
function showActionError(message) {
  $("#error").textContent = message; $("#error").dataset.from = "action";
}

function keepingFocus(render) {
  const key = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  render();
  if (key) { const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`); if (again) again.focus(); }
}

function empty(table, note, isEmpty) { $(note).hidden = !isEmpty; $(table).hidden = isEmpty; }

async function refresh() {
  try {
    const since = $("#failures-since").value;
    const job = $("#failures-job").value;
    const params = new URLSearchParams({ limit: "50" });
    if (job) params.set("job", job);
    if (since) params.set("since", new Date(Date.now() - Number(since) * 1000).toISOString());
    const [jobs, health, dead, failures, audit] = await Promise.all([
      api("GET", "/api/jobs"), fetch("/health").then((r) => r.json()), api("GET", "/api/dead-letters"),
      api("GET", "/api/failures?" + params), api("GET", "/api/audit?limit=50"),
    ]);
    const tokens = allowed("admin") ? await api("GET", "/api/tokens") : null;
    keepingFocus(() => {
      renderTokens(tokens);
      renderHold(health);
      renderJobs(jobs);
      renderFailures(failures);
      renderDead(dead);
      renderAudit(audit);
    });
    if (shownJob) await showHistory(shownJob);
    // A refresh clears only its own error (the API came back); an operator's failed
    // action stays shown until their next action.
    if ($("#error").dataset.from === "refresh") { $("#error").textContent = ""; delete $("#error").dataset.from; }
  } catch (error) {
    if (error.message !== "401") { $("#error").textContent = error.message; $("#error").dataset.from = "refresh"; }
  }
}

function renderHold(health) {
  $("#held").style.display = health.held ? "block" : "none";
  $("#hold-btn").hidden = !!health.held || !allowed("operator");
  $("#release-btn").hidden = !health.held || !allowed("operator");
}

function renderJobs(jobs) {
  jobsByName = {};
  const body = $("#jobs tbody"); body.textContent = "";
  const filter = $("#failures-job"); const chosen = filter.value;
  const names = jobs.map((j) => j.name);
  if (filter.options.length !== names.length + 1) {
    filter.textContent = "";
    filter.add(new Option("all jobs", ""));
    for (const name of names) filter.add(new Option(name, name));
    filter.value = chosen;
  }
  for (const job of jobs) {
    jobsByName[job.name] = job;
    const row = body.insertRow(); row.dataset.job = job.name;
    if (!job.enabled) row.className = "disabled";
    const name = row.insertCell(); name.dataset.label = "Job";
    const strong = document.createElement("strong"); strong.textContent = job.name; name.appendChild(strong);
    const desc = document.createElement("span"); desc.className = "desc"; desc.textContent = job.description;
    name.appendChild(desc);
    const source = job.schedule_source === "default" ? "" : ` (${job.schedule_source})`;
    const schedule = cell(row, job.schedule_words + source + (job.enabled ? "" : " — disabled"), "Schedule");
    workflowLines(schedule, job);
    timeCell(row, job.next_run, "Next run");
    const last = row.insertCell(); last.dataset.label = "Last run"; badge(last, job.last_status, job.last_run);
    timeCell(row, job.last_success, "Last success");
    const actions = row.insertCell(); actions.dataset.label = "Actions";
    if (allowed("operator")) {
      button(actions, "Run now", `run:${job.name}`, async () => { await runNow(job.name, {}); await refresh(); });
      button(actions, "Run with…", `run-with:${job.name}`, async () => {
        const typed = prompt(`Arguments for ${job.name}, as JSON (e.g. {"source": "A"})`, "{}");
        if (typed === null) return;
        let args;
        try { args = JSON.parse(typed); } catch (e) { throw new Error("arguments: not JSON: " + e.message); }
        await runNow(job.name, args); await refresh();
      });
      if (job.schedule || job.entries.length) {
        button(actions, "Backfill…", `backfill:${job.name}`, async () => {
          const from = prompt("Backfill from (exclusive), ISO 8601 with a zone, e.g. 2026-11-30T00:00Z");
          if (!from) return;
          const to = prompt("to (inclusive)", new Date().toISOString().slice(0, 16) + "Z");
          if (!to) return;
          const done = await api("POST", `/api/jobs/${job.name}/backfill`, { start: from, end: to });
          $("#note").textContent = `backfill of ${job.name}: queued ${done.run_ids.length} run(s)`;
          await showHistory(job.name);
        });
      }
      button(actions, job.enabled ? "Disable" : "Enable", `toggle:${job.name}`, async () => {
        await api("POST", `/api/jobs/${job.name}/${job.enabled ? "disable" : "enable"}`); await refresh();
      });
      button(actions, "Edit", `edit:${job.name}`, () => openEdit(job.name));
    }
    button(actions, "History", `history:${job.name}`, async () => { await showHistory(job.name); });
  }
}

function renderFailures(runs) {
  const body = $("#failures tbody"); body.textContent = "";
  empty("#failures", "#failures-empty", runs.length === 0);
  for (const run of runs) {
    const row = body.insertRow(); row.dataset.run = run.id;
    timeCell(row, run.finished_at, "Finished"); cell(row, run.job_name, "Job"); cell(row, "#" + run.id, "Run");
    const err = row.insertCell(); err.dataset.label = "Error";
    const pre = document.createElement("pre"); pre.textContent = run.error || ""; err.appendChild(pre);
    const actions = row.insertCell();
    if (allowed("operator")) retryButton(actions, run, "failures");
  }
}

function renderDead(dead) {
  const body = $("#dead tbody"); body.textContent = "";
  $("#dead-count").textContent = dead.length ? `(${dead.length})` : "";
  $("#dead-actions").hidden = dead.length === 0 || !allowed("operator");
  $("#dead-purge").hidden = !allowed("admin");
  empty("#dead", "#dead-empty", dead.length === 0);
  for (const letter of dead) {
    const row = body.insertRow(); row.dataset.deadLetter = letter.id;
    cell(row, letter.queue_name, "Queue"); cell(row, letter.actor_name, "Actor"); cell(row, letter.message_id, "Message");
    cell(row, letter.reason, "Reason"); timeCell(row, letter.created_at, "When");
    const actions = row.insertCell();
    if (allowed("operator")) {
      button(actions, "Replay", `replay:${letter.id}`, async () => {
        await api("POST", `/api/dead-letters/${letter.id}/replay`); await refresh();
      });
    }
  }
}

function renderTokens(tokens) {
  $("#tokens-section").hidden = tokens === null;
  if (tokens === null) return;
  const body = $("#tokens tbody"); body.textContent = "";
  for (const t of tokens) {
    const row = body.insertRow(); row.dataset.token = t.id;
    cell(row, String(t.id), "Id"); cell(row, t.name, "Name"); cell(row, t.scope, "Scope");
    timeCell(row, t.expires_at, "Expires");
    const used = timeCell(row, t.last_used_at, "Last used"); if (!t.last_used_at) used.textContent = "never";
    const actions = row.insertCell();
    button(actions, "Revoke", `revoke:${t.id}`, async () => {
      if (!confirm(`Revoke token ${t.id} (${t.name})? Requests with it are refused from now on.`)) return;
      await api("DELETE", `/api/tokens/${t.id}`); await refresh();
    });
  }
}

function change(before, after) {
  const show = (v) => (v === null || v === undefined ? "—" : JSON.stringify(v));
  return `${show(before)} → ${show(after)}`;
}

function renderAudit(rows) {
  const body = $("#audit tbody"); body.textContent = "";
  empty("#audit", "#audit-empty", rows.length === 0);
  for (const entry of rows) {
    const row = body.insertRow(); row.dataset.audit = entry.id;
    timeCell(row, entry.at, "When"); cell(row, entry.actor, "Who"); cell(row, entry.action, "What");
    cell(row, entry.target, "Target"); cell(row, change(entry.before, entry.after), "Before → after");
  }
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

function retryButton(parent, run, where) {
  button(parent, "Retry", `retry:${where}:${run.id}`, async () => {
    const made = await api("POST", `/api/runs/${run.id}/retry`);
    $("#error").textContent = ""; await showHistory(run.job_name); await refresh();
    return made;
  });
}

async function showHistory(name) {
  shownJob = name;
  const runs = await api("GET", `/api/jobs/${name}/runs?limit=20`);
  $("#history-title").hidden = false;
  $("#history-title").textContent = `Runs of ${name}`;
  keepingFocus(() => {
    const body = $("#history tbody"); body.textContent = "";
    empty("#history", "#history-empty", runs.length === 0);
    for (const run of runs) {
      const row = body.insertRow(); row.dataset.run = run.id;
      const id = row.insertCell(); id.dataset.label = "Run";
      const link = document.createElement("a");
      link.href = "#"; link.textContent = "#" + run.id; link.title = "show its chain";
      link.addEventListener("click", (e) => { e.preventDefault(); showChain(run.id).catch((err) => { $("#error").textContent = err.message; }); });
      id.appendChild(link);
      let trigger = run.trigger + (run.retry_of ? ` of #${run.retry_of}` : "");
      if (run.entry) trigger += ` (entry ${run.entry})`;
      if (run.triggered_by) trigger += ` after #${run.triggered_by}`;
      if (run.args && Object.keys(run.args).length) trigger += " " + JSON.stringify(run.args);
      cell(row, trigger, "Trigger");
      const status = row.insertCell(); status.dataset.label = "Status"; badge(status, run.status);
      if (run.cancel_requested_at && run.status === "running") status.append(" (cancel requested)");
      timeCell(row, run.scheduled_for, "Slot"); timeCell(row, run.finished_at, "Finished");
      cell(row, text(run.records_processed), "Records");
      const out = row.insertCell(); out.dataset.label = "Output"; const pre = document.createElement("pre");
      pre.textContent = [run.output, run.error, run.skip_reason].filter(Boolean).join("\n"); out.appendChild(pre);
      const actions = row.insertCell();
      if (!allowed("operator")) continue;
      if (run.status === "queued" || (run.status === "running" && !run.cancel_requested_at)) {
        button(actions, "Cancel", `cancel:${run.id}`, async () => {
          await api("POST", `/api/runs/${run.id}/cancel`); await showHistory(name);
        });
      }
      if (run.status === "failed") retryButton(actions, run, "history");
    }
  });
}

// --- the edit form: the same validation as the API (the API's own answer is shown) ------
function openEdit(name) {
  const job = jobsByName[name]; if (!job) return;
  editing = job;
  $("#edit-title").textContent = `Edit ${name}`;
  $("#edit-times").value = job.override_times || "";
  $("#edit-interval").value = interval(job.override_interval_s);
  $("#edit-enabled").checked = job.enabled;
  $("#edit-notify").checked = job.notify_on_success;
  const admin = allowed("admin");
  for (const id of ["#edit-times", "#edit-interval", "#edit-notify"]) $(id).disabled = !admin;
  $("#edit-admin-note").hidden = admin;
  $("#edit-error").textContent = "";
  $("#edit").hidden = false;
  (admin ? $("#edit-times") : $("#edit-enabled")).focus();
}

function closeEdit() {
  const name = editing && editing.name; editing = null; $("#edit").hidden = true;
  const back = name && document.querySelector(`[data-key="${CSS.escape("edit:" + name)}"]`);
  if (back) back.focus();
}

async function saveEdit(event) {
  event.preventDefault();
  if (!editing) return;
  const job = editing;
  const times = $("#edit-times").value.trim() || null;
  const every = $("#edit-interval").value.trim() || null;
  try {
    // The schedule first: it is the one change the API may refuse (both times and an
    // interval, a malformed time); then nothing else is saved either.
    if (times !== (job.override_times || null) || every !== (interval(job.override_interval_s) || null)) {
      await api("PUT", `/api/jobs/${job.name}/schedule`, { times, interval: every });
    }
    if ($("#edit-notify").checked !== job.notify_on_success) {
      await api("PUT", `/api/jobs/${job.name}/notify-on-success`, { enabled: $("#edit-notify").checked });
    }
    if ($("#edit-enabled").checked !== job.enabled) {
      await api("POST", `/api/jobs/${job.name}/${$("#edit-enabled").checked ? "enable" : "disable"}`);
    }
  } catch (e) {
    if (e.message !== "401") $("#edit-error").textContent = e.message;
    return;
  }
  closeEdit();
  await refresh();
}

$("#edit").addEventListener("submit", saveEdit);
$("#edit-cancel").addEventListener("click", closeEdit);
$("#edit").addEventListener("keydown", (event) => { if (event.key === "Escape") closeEdit(); });

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("tickwork-token", token);
  await start();
});
$("#logout").addEventListener("click", () => logout(""));
$("#hold-btn").addEventListener("click", async () => {
  try { await api("POST", "/api/hold"); await refresh(); } catch (e) { $("#error").textContent = e.message; }
});
$("#release-btn").addEventListener("click", async () => {
  try { await api("POST", "/api/release", { mode: "run-missed" }); await refresh(); } catch (e) { $("#error").textContent = e.message; }
});
$("#dead-replay-all").addEventListener("click", async () => {
  try { const r = await api("POST", "/api/dead-letters/replay"); $("#dead-note").textContent = `replayed ${r.count}`; await refresh(); }
  catch (e) { $("#error").textContent = e.message; }
});
$("#dead-purge").addEventListener("click", async () => {
  if (!confirm("Delete every dead letter?")) return;
  try { const r = await api("DELETE", "/api/dead-letters"); $("#dead-note").textContent = `purged ${r.count}`; await refresh(); }
  catch (e) { $("#error").textContent = e.message; }
});
$("#token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const made = await api("POST", "/api/tokens", {
      name: $("#token-name").value, scope: $("#token-scope").value,
      expires_in_days: Number($("#token-days").value) || null,
    });
    $("#token-new").textContent = `Token ${made.id} (${made.name}, ${made.scope}); copy it now, it is not shown again: ${made.token}`;
    $("#token-name").value = "";
    await refresh();
  } catch (e) { if (e.message !== "401") $("#error").textContent = e.message; }
});
$("#failures-job").addEventListener("change", refresh);
$("#failures-since").addEventListener("change", refresh);

async function start() {
  if (!token) return;
  try { me = await api("GET", "/api/me"); } catch (e) { if (e.message !== "401") $("#error").textContent = e.message; return; }
  $("#who").textContent = `${me.name} (${me.scope})`;
  $("#zone").textContent = `times in ${ZONE}`;
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  await refresh();
}
setInterval(() => { if (token && me) refresh(); }, 3000);
start();
