/* The F9 panel: a thin client of fleetd's admin REST API (/v1). It holds no state of its own
 * beyond the API token (sessionStorage) and redraws from the API every two seconds. Creating a
 * VM is two explicit steps: POST /v1/plans shows the plan; only "Confirm" creates. */
"use strict";

const REFRESH_MS = 2000;
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("totebox-token") || "";
let currentPlan = null;
let timer = null;
let auditEntries = [];   /* the audit record read so far, oldest first */
let auditAfter = 0;      /* the last sequence number read (GET /v1/audit?after=N) */

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/* Builds an element: el("td", {class: "x"}, "text", child...). Text is never parsed as HTML. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

const mib = (v) => (v === undefined || v === null ? "—" : `${v} MiB`);
const age = (ms) => (ms === undefined || ms === null ? "never" : ms < 1000 ? `${ms} ms ago` : `${(ms / 1000).toFixed(1)} s ago`);

function renderNodes(nodes) {
  fill($("#nodes tbody"), nodes.map((n) => el("tr", { "data-node": n.id },
    el("td", {}, n.name && n.name !== n.id ? `${n.id} (${n.name})` : n.id),
    el("td", {}, n.role),
    el("td", { class: `state-${n.state}` }, n.state),
    el("td", {}, n.cpu_percent === undefined ? "—" : `${n.cpu_percent.toFixed(1)} % of ${n.cpus}`),
    el("td", {}, n.mem_available_mib === undefined ? "—" : `${mib(n.mem_available_mib)} of ${mib(n.mem_total_mib)}`),
    el("td", {}, n.vm_count ?? "—"),
    el("td", {}, age(n.heartbeat_age_ms)))));
}

const bytes = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

/* A push as one line: "done on 2/2 nodes", or each node's progress while it runs. */
function pushText(p) {
  if (!p) return "—";
  if (p.state !== "running") return `${p.state} on ${p.nodes_done}/${p.nodes.length} nodes`;
  return p.nodes.map((n) => `${n.node} ${n.state} ${Math.floor((100 * (n.offset + n.bytes_sent)) / Math.max(1, n.total))} %`).join(", ");
}

/* The images the nodes hold, with the last push of each name; the plan form's image picker. */
function renderImages(doc) {
  const pushes = new Map((doc.pushes || []).map((p) => [p.name, p]));
  const rows = (doc.images || []).map((i) => ({ ...i, push: pushes.get(i.name) }));
  for (const p of pushes.values())
    if (!rows.some((r) => r.name === p.name)) rows.push({ name: p.name, sha256: p.sha256, size: p.size, nodes: [], push: p });
  fill($("#images tbody"), rows.map((r) => el("tr", { "data-image": r.name },
    el("td", {}, r.name),
    el("td", { title: r.sha256 }, r.sha256.slice(0, 12)),
    el("td", {}, bytes(r.size)),
    el("td", {}, r.nodes.length ? r.nodes.join(", ") : "—"),
    el("td", {}, pushText(r.push)))));
  const names = [...new Set((doc.images || []).map((i) => i.name))];
  fill($("#image-names"), names.map((n) => el("option", { value: n })));
}

function integrityOf(vm) {
  const i = vm.integrity || {};
  return i.status || "unknown";
}

// The last full verification, or that the one asked for is still awaited.
function verificationText(vm) {
  const v = vm.verification || {};
  if (v.pending) return "verification pending";
  if (!v.last) return "";
  const l = v.last;
  return `verified ${new Date(l.at).toLocaleString()} (${l.trigger}, ${l.duration_ms} ms, ${l.mismatches} mismatches)`;
}

function vmActions(vm) {
  const verbs = [];
  if (vm.lifecycle === "active") verbs.push("suspend", "verify", "archive");
  if (vm.lifecycle === "suspended") verbs.push("resume", "archive");
  return verbs.map((verb) => el("button", {
    "data-action": verb,
    title: verb === "verify" ? "ask the VM's node for a full verification of its vault" : "",
    onclick: async () => {
      // verify changes nothing, so it asks no question; the others change the VM's lifecycle
      if (verb !== "verify" && !confirm(`${verb} ${vm.id}?${verb === "archive" ? " An archived VM keeps its disks but will not start again." : ""}`)) return;
      try { await api("POST", `/v1/vms/${encodeURIComponent(vm.id)}/${verb}`); } catch (e) { alert(e.message); }
      refresh();
    },
  }, verb));
}

function renderVms(vms) {
  fill($("#vms tbody"), vms.map((vm) => {
    const integrity = integrityOf(vm);
    const mismatches = (vm.integrity && vm.integrity.mismatches) || [];
    return el("tr", { "data-vm": vm.id, class: integrity === "mismatch" ? "highlight-mismatch" : "" },
      el("td", {}, vm.id),
      el("td", {}, vm.entity),
      el("td", { class: vm.node_state ? `state-${vm.node_state}` : "" }, vm.node_id || (vm.pin && vm.pin.node_id) || "—",
        (vm.misplaced_on || []).length ? el("div", { class: "integrity-mismatch" }, `MISPLACED: also on ${vm.misplaced_on.join(", ")}`) : ""),
      el("td", { class: `status-${vm.status}`, title: vm.reason || "" }, vm.status + (vm.state && vm.state !== vm.status ? ` (${vm.state})` : "") + (vm.reason ? ` — ${vm.reason}` : "")),
      el("td", {}, vm.lifecycle),
      el("td", { title: mismatches.map(mismatchText).join("\n") },
        el("span", { class: `integrity-${integrity}` }, integrity + (mismatches.length ? ` (${mismatches.length})` : "")),
        mismatches.length ? el("div", { class: "mismatch-list" }, ...mismatches.slice(0, 3).map((m) =>
          el("div", {}, `${m.kind}${m.path ? ` ${m.path}` : ""}`))) : ""),
      el("td", {}, ...vmActions(vm),
        verificationText(vm) ? el("div", { class: "verification" }, verificationText(vm)) : ""));
  }));
}

function auditClass(e) {
  const text = `${e.kind} ${JSON.stringify(e.detail || {})}`;
  // a verification's result counts its mismatches: highlighted only when there are some
  if (e.kind === "vm.verified") return (e.detail && e.detail.result && e.detail.result.mismatches) ? "highlight-mismatch" : "";
  if (/mismatch|misplaced/.test(text)) return "highlight-mismatch";
  if (/evict/.test(text)) return "highlight-eviction";
  return "";
}

const mismatchText = (m) => `${m.kind}${m.path ? ` ${m.path}` : ""}${m.detail ? ` (${m.detail})` : ""}`;

/* One line per audit entry; an integrity report is shown as its mismatches, not as raw JSON. */
function auditDetail(d) {
  if (typeof d === "string") return d;
  return Object.entries(d || {}).map(([k, v]) => {
    if (k === "integrity" && v && typeof v === "object") {
      const ms = v.mismatches || [];
      return `integrity=${v.status}${ms.length ? `: ${ms.map(mismatchText).join("; ")}` : ""}`;
    }
    return `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`;
  }).join(" ");
}

/* Reads the audit record forward from the last entry seen; shows the newest 200. */
async function refreshAudit() {
  for (let page = 0; page < 20; page++) {
    const r = await api("GET", `/v1/audit?after=${auditAfter}`);
    const entries = r.entries || [];
    if (!entries.length) break;
    auditEntries.push(...entries);
    auditAfter = r.next_after;
  }
  auditEntries = auditEntries.slice(-200);
  fill($("#audit tbody"), auditEntries.slice().reverse().map((e) => el("tr", { class: auditClass(e), "data-kind": e.kind },
    el("td", {}, e.seq),
    el("td", { title: e.time }, (e.time || "").replace("T", " ").replace(/\.\d+Z$/, "Z")),
    el("td", {}, e.kind),
    el("td", {}, e.subject),
    el("td", {}, auditDetail(e.detail)))));
}

/* The misplaced banner: a VM reported by a node it is not pinned to (a copy of its disks and
 * definition, or worse) is the fleet's first alarm, shown above everything until it ends. */
function renderMisplaced(h) {
  const banner = $("#misplaced-banner");
  const vms = (h && h.misplaced && h.misplaced.vms) || [];
  banner.hidden = vms.length === 0;
  banner.textContent = vms.length
    ? `MISPLACED: ${vms.map((v) => `VM ${v.vm_id} (entity ${v.entity}) pinned to node ${v.pinned_to} is reported by node ${v.reported_by}`).join("; ")}`
    : "";
}

/* The fleet badge: an integrity mismatch is red and comes first; a VM whose agent has not
 * reported yet (integrity "unknown") or a suspect, evicted or unhealthy node is amber; else green. */
function renderHealth(h) {
  renderMisplaced(h);
  const b = $("#fleet-health");
  const integrity = h && h.integrity ? h.integrity.status : "unknown";
  const bad = (h && h.integrity && h.integrity.mismatched_vms) || [];
  let text = "integrity: ok", level = "ok";
  if (integrity === "mismatch") {
    text = `integrity: MISMATCH (${bad.length} VM${bad.length === 1 ? "" : "s"}: ${bad.map((v) => v.vm_id || v).join(", ")})`;
    level = "bad";
  } else if (integrity !== "ok") {
    text = "integrity: waiting for agent reports";
    level = "warn";
  }
  if (h && h.status === "degraded") {
    const n = h.nodes || {};
    text += ` · nodes degraded (${["suspect", "evicted", "unhealthy"].filter((s) => n[s]).map((s) => `${n[s]} ${s}`).join(", ")})`;
    if (level === "ok") level = "warn";
  }
  b.textContent = text;
  b.className = `badge ${level}`;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [nodes, vms, health, images] = await Promise.all([
      api("GET", "/v1/nodes"), api("GET", "/v1/vms"), api("GET", "/v1/health"), api("GET", "/v1/images")]);
    renderNodes(nodes.nodes || []);
    renderImages(images);
    renderVms(vms.vms || []);
    renderHealth(health);
    await refreshAudit();
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e.status === 401) return showLogin("The token was refused; log in again.");
    $("#updated").textContent = `not updated: ${e.message}`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

/* A plan (or, when no node fits, the refusal with its candidates) with every candidate's reason. */
function renderPlan(plan, refusal) {
  currentPlan = refusal ? null : plan;
  const chosen = refusal ? null : plan.node_id;
  $("#plan").hidden = false;
  $("#plan-id").textContent = plan.id || "";
  $("#plan-summary").textContent = chosen
    ? `Chosen node: ${chosen}. The plan expires at ${plan.expires_at}.`
    : `No node fits: ${refusal}`;
  fill($("#candidates tbody"), (plan.candidates || []).map((c) => el("tr", { class: c.chosen ? "chosen" : "", "data-candidate": c.node_id },
    el("td", {}, c.chosen ? `${c.node_id} ✔ chosen` : c.node_id),
    el("td", {}, c.state === "unseen" ? "—" : `${mib(c.available_mib)} (${mib(c.left_after_mib)} left after)`),
    el("td", {}, age(c.heartbeat_age_ms)),
    el("td", {}, `${c.verdict}: ${c.reason}`))));
  $("#plan-margin").textContent = `Safety margin: ${mib(plan.safety_margin_mib)} must stay available after the VM.`;
  $("#plan-ack").checked = false;
  $("#plan-ack").disabled = !chosen;
  $("#plan-confirm").disabled = true;
}

async function submitPlan(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {};
  for (const [k, v] of f.entries()) body[k] = ["entity", "image"].includes(k) ? v : Number(v);
  $("#create-error").textContent = "";
  try {
    renderPlan(await api("POST", "/v1/plans", body));
  } catch (e) {
    if (e.problem.candidates) renderPlan(e.problem, e.message);
    else $("#create-error").textContent = e.message;
  }
}

async function confirmPlan() {
  if (!currentPlan) return;
  $("#plan-confirm").disabled = true;
  try {
    await api("POST", `/v1/plans/${encodeURIComponent(currentPlan.id)}/confirm`);
    closeCreate();
  } catch (e) {
    $("#create-error").textContent = e.message;
  }
  refresh();
}

async function dropPlan() {
  if (currentPlan) await api("DELETE", `/v1/plans/${encodeURIComponent(currentPlan.id)}`).catch(() => null);
  closeCreate();
}

function openCreate() {
  $("#create").hidden = false;
  $("#plan").hidden = true;
  $("#create-error").textContent = "";
  $("#plan-form [name=entity]").focus();
}

function closeCreate() {
  currentPlan = null;
  $("#create").hidden = true;
}

function showLogin(message) {
  clearTimeout(timer);
  token = "";
  sessionStorage.removeItem("totebox-token");
  $("#main-view").hidden = true;
  $("#logout").hidden = true;
  $("#login-view").hidden = false;
  $("#login-error").textContent = message || "";
}

async function login(ev) {
  ev.preventDefault();
  token = $("#token").value.trim();
  try {
    await api("GET", "/v1/nodes");
  } catch (e) {
    return showLogin(e.status === 401 ? "That token is not valid." : e.message);
  }
  sessionStorage.setItem("totebox-token", token);
  $("#login-view").hidden = true;
  $("#main-view").hidden = false;
  $("#logout").hidden = false;
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => showLogin());
  $("#new-vm").addEventListener("click", openCreate);
  $("#create-cancel").addEventListener("click", closeCreate);
  $("#plan-form").addEventListener("submit", submitPlan);
  $("#plan-ack").addEventListener("change", (e) => { $("#plan-confirm").disabled = !e.target.checked; });
  $("#plan-confirm").addEventListener("click", confirmPlan);
  $("#plan-drop").addEventListener("click", dropPlan);
  document.addEventListener("keydown", (e) => { if (e.key === "F9") { e.preventDefault(); openCreate(); } });
  if (token) {
    $("#login-view").hidden = true;
    $("#main-view").hidden = false;
    $("#logout").hidden = false;
    refresh();
  } else {
    showLogin();
  }
});
