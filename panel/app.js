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
const CHAIN_EVERY_MS = 10000; /* the chain check walks the whole record: not every refresh */
let chainAt = 0;
let openNodeId = null;   /* the node whose history is shown */
let chainBroken = null;
let lastVms = [];        /* the VMs as last read */  /* {seq, problem} while fleetd finds the audit chain broken */

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  const raw = body instanceof Blob; /* a file picked for a deposit goes as its bytes */
  if (body !== undefined) headers["Content-Type"] = raw ? "application/octet-stream" : "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : raw ? body : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/* A 202's operation, polled until it ends; a failed one throws its problem as an ApiError. */
async function follow(op) {
  while (op && op.state === "running") {
    await new Promise((done) => setTimeout(done, 500));
    op = await api("GET", `/v1/operations/${encodeURIComponent(op.id)}`);
  }
  if (op && op.state === "failed") throw new ApiError(op.error.status, op.error);
  return op;
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
const pad = (n) => String(n).padStart(2, "0");
/* The panel's one date format: "2026-12-02 01:02:03 UTC" (fleetd's clock is UTC, so is this). */
function fmtTime(t) {
  if (t === undefined || t === null || t === "") return "—";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}
const dur = (ms) => (ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`);
const gib = (m) => (m === 0 ? "0" : m >= 1024 ? `${(m / 1024).toFixed(1)} GiB` : `${m} MiB`);
const age = (ms) => (ms === undefined || ms === null ? "never" : ms < 1000 ? `${ms} ms ago` : `${(ms / 1000).toFixed(1)} s ago`);

/* A node picker (the plan's target, the import's node): the roster's nodes, the operator's pick
 * kept across redraws; first is the option for no pick, or none. */
function renderNodePicker(pick, nodes, first) {
  const ids = nodes.map((n) => n.id).join(" ");
  if (pick.dataset.ids === ids) return;
  const keep = pick.value;
  pick.dataset.ids = ids;
  fill(pick, [...(first ? [el("option", { value: "" }, first)] : []),
    ...nodes.map((n) => el("option", { value: n.id }, `${n.id} (${n.role}, ${n.state})`))]);
  pick.value = nodes.some((n) => n.id === keep) ? keep : first ? "" : pick.value;
}

function renderNodes(nodes) {
  renderNodePicker($("#plan-node"), nodes, "fleet's choice");
  renderNodePicker($("#import-node"), nodes, null);
  fill($("#nodes tbody"), nodes.map((n) => el("tr", { "data-node": n.id },
    el("td", {}, el("button", { class: "link", "data-history": n.id, title: "CPU and RAM over the last hour",
      onclick: () => openNode(n) }, n.name && n.name !== n.id ? `${n.id} (${n.name})` : n.id)),
    el("td", {}, n.role),
    el("td", { class: `state-${n.state}` }, n.state),
    el("td", {}, n.cpu_percent === undefined ? "—" : `${Math.round(n.cpu_percent)} % of ${n.cpus} CPUs`),
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
  return `${fmtTime(l.at)} (${l.trigger}, ${dur(l.duration_ms)}, ${l.records} record${l.records === 1 ? "" : "s"}, ` +
    `${l.mismatches} mismatch${l.mismatches === 1 ? "" : "es"})`;
}

/* The verbs fleetd would accept now: none before the VM is created, after a failed creation,
 * while its node cannot be reached, or once it is archived (archived is for good). */
function allowedVerbs(vm) {
  // a failed creation left nothing to keep on its node: it may be retired (its record stays)
  if (vm.status === "failed") return vm.lifecycle === "retired" ? [] : ["retire"];
  if (vm.status !== "active" || ["unreachable", "missing"].includes(vm.state)) return [];
  if (vm.lifecycle === "active") return ["suspend", "verify", "archive"];
  if (vm.lifecycle === "suspended") return ["resume", "archive", "export"];
  if (vm.lifecycle === "archived") return ["export"];
  return [];
}

const VERB_TITLES = {
  verify: "ask the VM's node for a full verification of its vault",
  retire: "the creation failed: take the VM out of the list of live VMs; its audit record stays",
  export: "write the Totebox as one file on its node (vault disk, manifest, witnessed checkpoint) and sign it",
};
const VERB_WARNINGS = {
  archive: " An archived VM keeps its disks but will not start again.",
  export: " Its node writes it as one signed file in its exports/; nothing leaves the node.",
  retire: " Its creation failed; it leaves the live VMs for good. Nothing on its node is deleted and it stays in the audit record.",
};

/* The records view for a VM whose records can move now (active, and its node heard). */
function recordsButton(vm) {
  if (vm.status !== "active" || vm.lifecycle !== "active" || ["unreachable", "missing"].includes(vm.state)) return "";
  return el("button", { "data-records": vm.id, title: "the Totebox's records: list, last sealed, deposit",
    onclick: () => openRecords(vm) }, "Records");
}

function vmActions(vm) {
  const verbs = allowedVerbs(vm);
  return verbs.map((verb) => el("button", {
    "data-action": verb,
    title: VERB_TITLES[verb] || "",
    onclick: async () => {
      // verify changes nothing, so it asks no question; the others change the VM's lifecycle
      if (verb !== "verify" && !confirm(`${verb} ${vm.id}?${VERB_WARNINGS[verb] || ""}`)) return;
      const started = api("POST", `/v1/vms/${encodeURIComponent(vm.id)}/${verb}`);
      started.then(refresh, () => null);
      try {
        const done = await follow(await started);
        if (verb === "export") showExport(vm, done.result);
      } catch (e) { alert(e.message); }
      refresh();
    },
  }, verb));
}

const STATE_WORDS = { running: "running", paused: "paused", saved: "saved to disk", shutoff: "shut off", shutdown: "shutting down",
  crashed: "crashed", unreachable: "unreachable (node not heard)", missing: "missing on its node", unknown: "not reported yet" };
const EXPECTED = { active: ["running"], suspended: ["saved", "paused", "shutoff"], archived: ["shutoff"] };

/* What the VM is doing, apart from what the operator asked of it (its lifecycle): being created,
 * a failed creation, or the node's report, green only when it is what the lifecycle asks. */
function runningCell(vm) {
  if (vm.status === "creating") return el("td", { class: "run-warn", title: vm.reason || "" }, "being created");
  // a retired one was dealt with: its reason stays readable, no longer an alarm
  if (vm.status === "failed") return el("td", { class: vm.lifecycle === "retired" ? "run-quiet" : "run-bad" },
    `creation failed${vm.reason ? `: ${vm.reason}` : ""}`);
  const st = vm.state || "unknown";
  const expected = EXPECTED[vm.lifecycle] || [];
  const cls = expected.includes(st) ? (st === "running" ? "run-ok" : "run-quiet")
    : ["unknown"].includes(st) ? "run-warn" : "run-bad";
  const note = !expected.includes(st) && !["unknown", "unreachable", "missing"].includes(st) && expected.length
    ? ` (should be ${expected.map((e) => STATE_WORDS[e]).join(" or ")})` : "";
  return el("td", { class: cls, title: vm.reason || "" }, (STATE_WORDS[st] || st) + note);
}

function renderVms(vms) {
  if (!vms.length)
    return fill($("#vms tbody"), [el("tr", {}, el("td", { colspan: 8, class: "muted" },
      "No Totebox VMs yet: New VM (F9) plans one; nothing is created before you confirm the plan."))]);
  fill($("#vms tbody"), vms.map((vm) => {
    const integrity = integrityOf(vm);
    const found = (vm.integrity && vm.integrity.mismatches) || [];
    const mismatches = mismatchLines(found);
    const short = mismatchLines(found, (m) => `${m.kind}${m.path ? ` ${m.path}` : ""}`);
    const never = vm.status === "failed";
    return el("tr", { "data-vm": vm.id, class: integrity === "mismatch" ? "highlight-mismatch" : "" },
      el("td", {}, vm.id),
      el("td", {}, vm.entity),
      el("td", { class: vm.node_state ? `state-${vm.node_state}` : "" }, vm.node_id || (vm.pin && vm.pin.node_id) || "—",
        (vm.misplaced_on || []).length ? el("div", { class: "integrity-mismatch" }, `MISPLACED: also on ${vm.misplaced_on.join(", ")}`) : ""),
      vm.status === "failed" ? el("td", { class: vm.lifecycle === "retired" ? "lifecycle-retired" : "run-quiet",
        title: "the VM was never created" }, vm.lifecycle === "retired" ? "retired" : "—")
        : el("td", { class: `lifecycle-${vm.lifecycle}` }, vm.lifecycle),
      runningCell(vm),
      never ? el("td", { class: "run-quiet" }, "—") : el("td", { title: mismatches.join("\n") },
        el("span", { class: `integrity-${integrity}` }, integrity + (mismatches.length ? ` (${mismatches.length})` : "")),
        vm.witness && (vm.witness.named || []).length ? el("div", { class: "integrity-mismatch" }, `checkpoints: ${vm.witness.named.join(", ")}`) : "",
        vm.witness && vm.witness.stalled ? el("div", { class: "integrity-unknown" }, "stalled: verification overdue") : "",
        short.length ? el("div", { class: "mismatch-list" }, ...short.slice(0, 3).map((m) => el("div", {}, m)),
          short.length > 3 ? el("div", {}, `and ${short.length - 3} more`) : "") : ""),
      el("td", { class: "verification" }, never ? "—" : verificationText(vm) || "never"),
      el("td", { class: "actions" }, recordsButton(vm), ...vmActions(vm)));
  }));
}

function auditClass(e) {
  const text = `${e.kind} ${JSON.stringify(e.detail || {})}`;
  // a verification's result counts its mismatches: highlighted only when there are some
  if (e.kind === "vm.verifications_clean") return ""; /* a day's clean verifications, counted */
  if (e.kind === "vm.verified") return (e.detail && e.detail.result && e.detail.result.mismatches) ? "highlight-mismatch" : "";
  if (/mismatch|misplaced|^vault\.(fork|rollback|lying_host)/.test(text)) return "highlight-mismatch";
  if (/evict/.test(text)) return "highlight-eviction";
  return "";
}

const mismatchText = (m) => `${m.kind}${m.path ? ` ${m.path}` : ""}${m.detail ? ` (${m.detail})` : ""}`;
/* The same mismatch reported again and again (every verification finds it) is one line with its
 * count, not one line per report. */
function mismatchLines(ms, text = mismatchText) {
  const seen = new Map();
  for (const m of ms || []) { const t = text(m); seen.set(t, (seen.get(t) || 0) + 1); }
  return [...seen].map(([t, n]) => (n > 1 ? `${t} (reported ${n} times)` : t));
}

/* An audit entry's detail in words: a node's state change as "alive → evicted", an integrity
 * report as its mismatches, and any other field as "label: value" with units and dates. */
const DETAIL_LABELS = { node_id: "node", vm_id: "VM", memory_mib: "memory", vault_disk_mib: "vault disk",
  heartbeat_age_ms: "last heartbeat", libvirt_age_ms: "libvirt answered", requested_by: "asked by",
  request_id: "request", duration_ms: "took", expires_ms: "expires", at_ms: "at" };

function detailValue(k, v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) return v.length ? v.map((x) => detailValue("", x)).join(", ") : "none";
  if (typeof v === "object") {
    // "at" and "at_ms" say the same: the one in words is kept
    return Object.entries(v).filter(([kk]) => !(kk.endsWith("_ms") && kk.slice(0, -3) in v))
      .map(([kk, vv]) => `${DETAIL_LABELS[kk] || kk.replace(/_/g, " ")} ${detailValue(kk, vv)}`).join(", ");
  }
  if (typeof v === "string" && k === "requested_by") return actorText(v);
  if (typeof v === "number" && /_mib$/.test(k)) return gib(v);
  if (typeof v === "number" && /(^at_ms|expires_ms)$/.test(k)) return fmtTime(v);
  if (typeof v === "number" && /_ms$/.test(k)) return /age/.test(k) ? `${dur(v)} before` : dur(v);
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
  return String(v);
}

function auditDetail(e) {
  const d = e.detail;
  if (d === null || d === undefined) return "";
  if (typeof d !== "object") return String(d);
  const parts = [];
  const rest = Object.assign({}, d);
  if ("from" in rest && "to" in rest) {
    parts.push(`${rest.from} → ${rest.to}`);
    delete rest.from;
    delete rest.to;
  }
  if (rest.integrity && typeof rest.integrity === "object") {
    const ms = rest.integrity.mismatches || [];
    parts.push(`integrity ${rest.integrity.status}${ms.length ? `: ${mismatchLines(ms).join("; ")}` : ""}`);
    delete rest.integrity;
  }
  for (const [k, v] of Object.entries(rest)) if (v !== "" && v !== null) parts.push(`${DETAIL_LABELS[k] || k.replace(/_/g, " ")}: ${detailValue(k, v)}`);
  return parts.join(" · ");
}

/* Who did it: a token's name for an operator ("token:alice" → "alice"), fleetd for its own
 * observations, fleetctl for what was done on the controller's state directory. */
function actorText(a) {
  if (!a) return "—";
  if (a.startsWith("token:")) return a.slice(6);
  if (a === "cli") return "fleetctl (on the controller)";
  return a;
}

/* The chain's status above the record: fleetd checks every entry's hash now; the signed
 * checkpoint and what the nodes hold say whether the record was rewritten since. */
async function refreshChain() {
  const c = await api("GET", "/v1/audit/checkpoint");
  const box = $("#audit-chain");
  if (!c) { box.textContent = "No audit checkpoint yet."; box.className = "chain warn"; return; }
  const chain = c.chain || {};
  const ws = c.witnesses || [];
  const current = ws.filter((w) => !w.diverged && w.held === c.size);
  const diverged = ws.filter((w) => w.diverged);
  const behind = ws.filter((w) => !w.diverged && w.held !== c.size);
  const parts = [];
  parts.push(`Checked ${fmtTime(Date.now())}:`);
  parts.push(chain.intact ? `chain intact, ${chain.entries} entries, each hash links to the one before.`
    : `CHAIN BROKEN: ${chain.problem || "an entry does not link"}.`);
  if (c.size !== null && c.size !== undefined) parts.push(`Signed checkpoint covers ${c.size} entries.`);
  if (ws.length) {
    parts.push(`Witnesses: ${current.length} of ${ws.length} nodes hold it` +
      (behind.length ? `; behind: ${behind.map((w) => `${w.node} (${w.held === null ? "none yet" : w.held})`).join(", ")}` : "") +
      (diverged.length ? `; DIVERGED: ${diverged.map((w) => w.node).join(", ")}` : "") + ".");
  }
  box.textContent = parts.join(" ");
  box.className = `chain ${!chain.intact || diverged.length ? "bad" : behind.length ? "warn" : "ok"}`;
  const m = !chain.intact && /entry (\d+)/.exec(chain.problem || "");
  chainBroken = chain.intact ? null : { seq: m ? Number(m[1]) : null, problem: chain.problem };
  renderAuditRows();
}

/* Reads the audit record forward from the last entry seen; shows the newest 200. */
async function refreshAudit() {
  for (let page = 0; page < 20; page++) {
    const r = await api("GET", `/v1/audit?after=${auditAfter}`);
    // two refreshes may overlap (an action's own and the timer's): keep each entry once
    const entries = (r.entries || []).filter((e) => e.seq > auditAfter);
    if (!entries.length) break;
    auditEntries.push(...entries);
    auditAfter = r.next_after;
  }
  auditEntries = auditEntries.slice(-200);
  renderAuditRows();
}

/* The broken entry, when the chain check names one, is marked; its text is what the panel
 * read before (the record as it was when shown), the chain status says what fleetd finds now. */
function renderAuditRows() {
  fill($("#audit tbody"), auditEntries.slice().reverse().map((e) => el("tr", {
    class: chainBroken && chainBroken.seq === e.seq ? "highlight-mismatch broken" : auditClass(e), "data-kind": e.kind, "data-seq": e.seq },
    el("td", {}, e.seq),
    el("td", { title: e.time }, fmtTime(e.time)),
    el("td", { class: "actor" }, actorText(e.actor)),
    el("td", {}, e.kind),
    el("td", {}, e.subject),
    el("td", { title: JSON.stringify(e.detail || {}) }, auditDetail(e)))));
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

/* The vault witness's alarms (a lying host, a rolled-back or forked vault: red) and the stalled
 * Toteboxes, whose full verification is overdue (amber), each a banner until an operator acts. */
function renderVaults(h) {
  const w = $("#witness-banner"), s = $("#stalled-banner");
  const alarms = (h && h.vault_witness && h.vault_witness.vms) || [];
  const stalled = (h && h.stalled && h.stalled.vms) || [];
  w.hidden = alarms.length === 0;
  w.textContent = alarms.length
    ? `VAULT CHECKPOINTS: ${alarms.map((v) => `VM ${v.id} on node ${v.node_id}: ${(v.named || [v.state]).join(", ").toUpperCase()}`).join("; ")}`
    : "";
  s.hidden = stalled.length === 0;
  s.textContent = stalled.length ? `STALLED (verification overdue): ${stalled.join(", ")}` : "";
}

/* The fleet badge: an integrity mismatch is red and comes first; a VM whose agent has not
 * reported yet (integrity "unknown") or a suspect, evicted or unhealthy node is amber; else green. */
function renderHealth(h) {
  renderMisplaced(h);
  renderVaults(h);
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
  if (chainBroken) {
    text += " · AUDIT CHAIN BROKEN";
    level = "bad";
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
    lastVms = vms.vms || [];
    renderVms(lastVms);
    renderHealth(health);
    await refreshAudit();
    if (Date.now() - chainAt > CHAIN_EVERY_MS) { chainAt = Date.now(); await refreshChain(); }
    if (openNodeId) await refreshNode();
    if (recordsVm) await refreshRecords().catch((e) => { $("#records-error").textContent = e.message; });
    $("#updated").textContent = `updated ${fmtTime(Date.now())}`;
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
  const target = refusal ? null : plan.target;
  const fleet = refusal ? null : plan.fleet_choice;
  $("#plan-summary").textContent = !chosen ? `No node fits: ${refusal}`
    : target ? `Your target: node ${target.node_id}, which ${target.verdict === "fits" ? "fits" : "does NOT fit"}. ` +
      `The fleet would choose ${fleet ? `node ${fleet}` : "no node"}. Confirming creates the VM on ${target.node_id}` +
      `${target.verdict === "fits" ? "" : " only if it fits by then: fleetd refuses an override that breaks the node's margin"}. ` +
      `The plan expires at ${fmtTime(plan.expires_at)}.`
    : `Chosen node: ${chosen} (the fleet's choice). The plan expires at ${fmtTime(plan.expires_at)}.`;
  renderCompare(target, fleet, plan.candidates || []);
  fill($("#candidates tbody"), (plan.candidates || []).map((c) => el("tr", {
    class: [c.chosen ? "chosen" : "", target && c.node_id === target.node_id ? "target" : ""].join(" ").trim(), "data-candidate": c.node_id },
    el("td", {}, c.node_id + (c.chosen ? " ✔ fleet's choice" : "") + (target && c.node_id === target.node_id ? " ◆ your target" : "")),
    el("td", {}, c.state === "unseen" ? "—" : `${mib(c.available_mib)} (${mib(c.left_after_mib)} left after)`),
    el("td", {}, age(c.heartbeat_age_ms)),
    el("td", {}, verdictText(c.verdict, c.reason)))));
  $("#plan-margin").textContent = `Safety margin: ${mib(plan.safety_margin_mib)} must stay available after the VM.`;
  $("#plan-ack-text").textContent = target ? ` I have read the plan; create this VM on node ${target.node_id} (my target, not the fleet's choice).`
    : ` I have read the plan; create this VM on the chosen node${chosen ? ` (${chosen})` : ""}.`;
  $("#plan-ack").checked = false;
  $("#plan-ack").disabled = !chosen;
  $("#plan-confirm").disabled = true;
}

/* A verdict and its reason in one phrase ("fits, but another node has more available RAM", not
 * "fits: fits, but ..."). */
function verdictText(verdict, reason) {
  const v = verdict === "does-not-fit" ? "does not fit" : verdict;
  return !reason ? v : reason.startsWith(v) || reason.startsWith("chosen") ? reason : `${v}: ${reason}`;
}

/* What stays available after the VM, against the margin that must stay. */
const leftText = (left, margin) => `${left < 0 ? "−" : ""}${mib(Math.abs(left))} (must stay ≥ ${mib(margin)})`;

/* With a target node: its verdict and figures beside the fleet's own choice, one row each. */
function renderCompare(target, fleet, candidates) {
  const table = $("#plan-compare");
  table.hidden = !target;
  if (!target) return fill($("#plan-compare tbody"), []);
  const fc = candidates.find((c) => c.node_id === fleet);
  const rows = [el("tr", { "data-compare": "target", class: "target" },
    el("td", {}, "Your target"), el("td", {}, target.node_id),
    el("td", { class: `verdict-${target.verdict}` }, verdictText(target.verdict, target.reason)),
    el("td", {}, mib(target.available_mib)), el("td", {}, leftText(target.left_after_mib, target.margin_mib)),
    el("td", {}, target.disk_left_after_mib === null ? "not reported" : mib(target.disk_left_after_mib)))];
  rows.push(el("tr", { "data-compare": "fleet" },
    el("td", {}, "Fleet's choice"), el("td", {}, fleet || "—"),
    el("td", { class: fc ? "verdict-fits" : "verdict-does-not-fit" }, fc ? verdictText(fc.verdict, fc.reason) : "no node fits"),
    el("td", {}, fc ? mib(fc.available_mib) : "—"), el("td", {}, fc ? leftText(fc.left_after_mib, target.margin_mib) : "—"),
    el("td", {}, fc && fc.disk_free_mib !== null ? `${mib(fc.disk_free_mib)} free now` : "—")));
  fill($("#plan-compare tbody"), rows);
}

async function submitPlan(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {};
  for (const [k, v] of f.entries()) {
    if (k === "node" && !v) continue; /* the fleet chooses */
    body[k] = ["entity", "image", "node"].includes(k) ? v : Number(v);
  }
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
    const op = await api("POST", `/v1/plans/${encodeURIComponent(currentPlan.id)}/confirm`);
    closeCreate();
    refresh();
    follow(op).catch((e) => alert(e.message)).then(refresh);
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

/* A small chart as inline SVG (no library): lines over the last hour, the y axis from 0 to max. */
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c));
  return e;
}

/* The x axis spans the last hour, or less while the history is younger (after fleetd started):
 * from the first sample to now, at least a minute, so that a short history is not one line. */
function chart(title, samples, lines, max, unit) {
  const W = 360, H = 110, L = 48, R = 8, T = 8, B = 22;
  const now = Date.now();
  const span = Math.min(3600 * 1000, Math.max(60 * 1000, now - Date.parse(samples[0].at)));
  const x = (t) => L + (W - L - R) * Math.max(0, 1 - (now - t) / span);
  const y = (v) => T + (H - T - B) * (1 - Math.min(v, max) / max);
  const ago = (ms) => (ms >= 60000 ? `${Math.round(ms / 60000)} min ago` : `${Math.round(ms / 1000)} s ago`);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title, class: "chart" },
    svg("title", {}, title));
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: "grid" }));
    root.append(svg("text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", class: "axis" }, unit(max * f)));
  }
  for (const [label, at, anchor] of [[ago(span), now - span, "start"], [ago(span / 2), now - span / 2, "middle"], ["now", now, "end"]])
    root.append(svg("text", { x: x(at), y: H - 6, "text-anchor": anchor, class: "axis" }, label));
  for (const line of lines) {
    const pts = samples.map((p) => `${x(Date.parse(p.at)).toFixed(1)},${y(line.value(p)).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: pts, class: `series ${line.cls}` }));
  }
  return root;
}

async function refreshNode() {
  const id = openNodeId;
  const h = await api("GET", `/v1/nodes/${encodeURIComponent(id)}/history`);
  if (id !== openNodeId) return;
  const s = h.samples || [];
  const box = $("#node-charts");
  if (s.length < 2) {
    box.replaceChildren(el("p", { class: "muted" }, s.length
      ? "One sample so far; the charts start with the next heartbeat."
      : "No heartbeat from this node since fleetd started: no history yet."));
    return;
  }
  const last = s[s.length - 1];
  const total = Math.max(...s.map((p) => p.total_mib)) || 1;
  const peak = Math.max(...s.map((p) => p.cpu_percent));
  const from = `${fmtTime(s[0].at)}`;
  box.replaceChildren(
    el("figure", {}, chart(`CPU of node ${id}, last hour`, s, [{ cls: "cpu", value: (p) => p.cpu_percent }], 100, (v) => `${Math.round(v)} %`),
      el("figcaption", {}, `CPU: now ${Math.round(last.cpu_percent)} %, peak ${Math.round(peak)} %`)),
    el("figure", {}, chart(`RAM of node ${id}, last hour`, s, [
      { cls: "used", value: (p) => p.total_mib - p.available_mib },
      { cls: "committed", value: (p) => p.committed_mib }], total, (v) => gib(Math.round(v))),
      el("figcaption", {}, el("span", { class: "key used" }, "■"), ` in use ${gib(last.total_mib - last.available_mib)} of ${gib(last.total_mib)}  `,
        el("span", { class: "key committed" }, "■"), ` committed to Totebox VMs ${gib(last.committed_mib)}`)),
    el("p", { class: "muted" }, `${s.length} samples, one per heartbeat, since ${from}.`));
}

function openNode(n) {
  openNodeId = n.id;
  $("#node-detail").hidden = false;
  $("#node-title").textContent = `Node ${n.id}${n.name && n.name !== n.id ? ` (${n.name})` : ""} — last hour`;
  $("#node-charts").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  $("#node-close").focus();
  refreshNode().catch((e) => { $("#node-charts").textContent = e.message; });
}

function closeNode() {
  openNodeId = null;
  $("#node-detail").hidden = true;
}

/* ---- a Totebox's records (the Diode): its ledger a page at a time, newest first, and deposits */
const RECORDS_PAGE = 10;
let recordsVm = null;    /* the VM whose records are shown */
let recordsAfter = null; /* the page shown: records with seq > recordsAfter; null: the newest */
let recordsShown = 0;    /* the first record of the page shown is recordsShown + 1 */

const shortHash = (h) => (h ? `${h.slice(0, 16)}…` : "—");
function facts(dl, pairs) {
  fill(dl, pairs.flatMap(([k, v, attrs]) => [el("dt", {}, k), el("dd", attrs || {}, v)]));
}

/* Each refresh of the records view has a number: only the last one begun may draw, so that a
 * periodic refresh begun before the operator paged does not answer after it and page back. */
let recordsGen = 0;

async function refreshRecords() {
  const vm = recordsVm;
  const gen = ++recordsGen;
  const path = `/v1/vms/${encodeURIComponent(vm.id)}/records`;
  const head = await api("GET", `${path}?after=0&limit=1`);
  const total = head.total;
  const newest = total ? Math.floor((total - 1) / RECORDS_PAGE) * RECORDS_PAGE : 0; /* pages 1–10, 11–20, … */
  const after = recordsAfter === null ? newest : Math.min(recordsAfter, newest);
  const page = total ? await api("GET", `${path}?after=${after}&limit=${RECORDS_PAGE}`) : head;
  const last = total ? (after === newest ? page : await api("GET", `${path}?after=${total - 1}&limit=1`)).records.slice(-1)[0] : null;
  if (vm !== recordsVm || gen !== recordsGen) return;
  const shownVm = (lastVms || []).find((v) => v.id === vm.id) || vm;
  const sth = page.sth || {};
  facts($("#records-summary"), [
    ["Records", `${total}`, { "data-fact": "count" }],
    ["Last sealed", last ? `${fmtTime(last.time)} (#${last.seq}, ${last.path})` : "nothing sealed yet", { "data-fact": "last" }],
    ["Last verification", lastVerification(shownVm, total), { "data-fact": "verified" }],
    ["Signed checkpoint", sth.root ? `covers ${sth.size} record${sth.size === 1 ? "" : "s"}, root ${shortHash(sth.root)}, signed ${fmtTime(sth.time_ms)}` : "—",
      { "data-fact": "checkpoint", class: "mono", title: sth.root || "" }],
  ]);
  fill($("#records-list tbody"), (page.records || []).slice().reverse().map((r) => el("tr", { "data-seq": r.seq },
    el("td", {}, r.seq), el("td", {}, fmtTime(r.time)), el("td", { class: "mono" }, r.path),
    el("td", {}, `${r.size} B`), el("td", { class: "mono", title: r.blake2b_256 }, shortHash(r.blake2b_256)),
    el("td", {}, r.supersedes ? `#${r.supersedes}` : "—"))));
  if (!total) fill($("#records-list tbody"), [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No records in this vault yet."))]);
  const from = total ? after + 1 : 0, to = Math.min(total, after + RECORDS_PAGE);
  $("#records-page").textContent = total ? `records ${from}–${to} of ${total}` : "";
  $("#records-newer").disabled = after >= newest;
  $("#records-older").disabled = after === 0;
  recordsShown = after;
  recordsAfter = after === newest ? null : after; /* on the newest page: follow new deposits */
}

/* The last full verification, and how many records were sealed after it (not yet re-verified). */
function lastVerification(vm, total) {
  const text = verificationText(vm);
  const l = vm.verification && vm.verification.last;
  if (!text) return "never";
  const since = l && total > l.records ? total - l.records : 0;
  return since ? `${text}; ${since} record${since === 1 ? "" : "s"} sealed since` : text;
}

function openRecords(vm) {
  recordsVm = vm;
  recordsAfter = null;
  $("#records").hidden = false;
  $("#records-title").textContent = `Records of ${vm.id} (entity ${vm.entity}, node ${vm.node_id || (vm.pin && vm.pin.node_id)})`;
  $("#receipt").hidden = true;
  $("#records-error").textContent = "";
  $("#deposit-status").textContent = "";
  $("#deposit-form").reset();
  fill($("#records-list tbody"), [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "Loading…"))]);
  $("#records-close").focus();
  refreshRecords().catch((e) => { $("#records-error").textContent = e.message; });
}

function closeRecords() {
  recordsVm = null;
  $("#records").hidden = true;
}

function pageRecords(older) {
  recordsAfter = older ? Math.max(0, recordsShown - RECORDS_PAGE) : recordsShown + RECORDS_PAGE;
  refreshRecords().catch((e) => { $("#records-error").textContent = e.message; });
}

function showReceipt(r) {
  const sth = r.sth || {};
  $("#receipt").hidden = false;
  facts($("#receipt-fields"), [
    ["Sequence", `#${r.seq}`, { "data-receipt": "seq" }],
    ["Path", r.path, { "data-receipt": "path", class: "mono" }],
    ["Size", `${r.size} bytes`, { "data-receipt": "size" }],
    ["BLAKE2b-256", r.blake2b_256, { "data-receipt": "blake2b_256", class: "mono" }],
    ["Checkpoint", `signed tree head over ${sth.size} records, root ${sth.root}, signed ${fmtTime(sth.time_ms)}`,
      { "data-receipt": "checkpoint", class: "mono" }],
    ["Inclusion proof", `leaf ${r.leaf_index}, ${(r.proof || []).length} hash${(r.proof || []).length === 1 ? "" : "es"} (checked by the node against the vault key)`,
      { "data-receipt": "proof" }],
    ["Supersedes", r.supersedes ? `#${r.supersedes}` : "nothing", { "data-receipt": "supersedes" }],
    ["Deposit id", r.deposit_id || "—", { "data-receipt": "deposit_id", class: "mono",
      title: "a retry with this id is sealed once (fleetctl deposit --deposit-id)" }],
  ]);
}

async function deposit(ev) {
  ev.preventDefault();
  const vm = recordsVm;
  const file = $("#deposit-file").files[0];
  if (!vm || !file) return;
  const name = $("#deposit-name").value.trim() || file.name;
  const sup = $("#deposit-supersedes").value;
  const q = new URLSearchParams({ name });
  if (sup) q.set("supersedes", sup);
  $("#records-error").textContent = "";
  $("#receipt").hidden = true;
  $("#deposit-submit").disabled = true;
  $("#deposit-status").textContent = `Depositing ${file.size} bytes as "${name}"…`;
  try {
    let r = await api("POST", `/v1/vms/${encodeURIComponent(vm.id)}/records?${q}`, file);
    if (r && r.state) {
      $("#deposit-status").textContent = "Uploaded; the agent is sealing it…";
      r = (await follow(r)).result;
    }
    $("#deposit-status").textContent = `Sealed as #${r.seq}.`;
    showReceipt(r);
    recordsAfter = null;
    await refreshRecords();
  } catch (e) {
    $("#deposit-status").textContent = "";
    $("#records-error").textContent = `Not deposited: ${e.message}`;
  }
  $("#deposit-submit").disabled = false;
}

/* ---- a Totebox as one file: the export's result, and an import planned then confirmed */

/* What an export left on the VM's node, and how anyone checks it offline (docs/operations.md). */
function showExport(vm, r) {
  const name = r.file.split("/").pop();
  $("#export-title").textContent = `Exported ${vm.id} on node ${r.node_id}`;
  facts($("#export-fields"), [
    ["File", r.file, { "data-export": "file", class: "mono" }],
    ["Size", `${r.size} bytes`, { "data-export": "size" }],
    ["SHA-256", r.sha256, { "data-export": "sha256", class: "mono" }],
    ["BLAKE2b-256", r.blake2b_256, { "data-export": "blake2b_256", class: "mono" }],
    ["Checkpoint", `the last one the fleet witnessed: ${r.checkpoint_size} record${r.checkpoint_size === 1 ? "" : "s"}`,
      { "data-export": "checkpoint" }],
    ["Signature", `${name}.sig, by the fleet's key (below)`, { "data-export": "signature" }],
    ["Resumed", r.resumed_bytes ? `${r.resumed_bytes} bytes kept from an earlier try` : "written whole",
      { "data-export": "resumed" }],
  ]);
  $("#export-check").textContent = `sha256sum -c ${name}.sha256
` +
    `openssl pkeyutl -verify -pubin -inkey fleet.pem -rawin -in ${name}.sha256 -sigfile ${name}.sig
` +
    `b2sum -l 256 ${name}

fleet.pem:
${r.fleet_public_key_pem}`;
  $("#export").hidden = false;
}

function closeExport() {
  $("#export").hidden = true;
}

let currentImport = null; /* the import plan shown, until confirmed or dropped */

function openImport() {
  currentImport = null;
  $("#import").hidden = false;
  $("#import-plan").hidden = true;
  $("#import-error").textContent = "";
  $("#import-status").textContent = "";
  $("#import-file").focus();
}

function closeImport() {
  currentImport = null;
  $("#import").hidden = true;
}

async function planImport(ev) {
  ev.preventDefault();
  $("#import-error").textContent = "";
  $("#import-status").textContent = "";
  $("#import-plan").hidden = true;
  const body = { file: $("#import-file").value.trim(), node: $("#import-node").value };
  try {
    const p = await api("POST", "/v1/imports", body);
    currentImport = p;
    facts($("#import-fields"), [
      ["Totebox", p.vm_id, { "data-import": "vm" }],
      ["From node", `${p.from_node} (its pin is retired; it keeps its copy archived and never starts it)`,
        { "data-import": "from" }],
      ["To node", `${p.node} (the file is there; fleetd moves nothing)`, { "data-import": "to" }],
      ["File", `${p.file}, SHA-256 ${p.sha256}`, { "data-import": "file", class: "mono" }],
      ["Checkpoint", `${p.checkpoint_size} record${p.checkpoint_size === 1 ? "" : "s"}, consistent with the last one the fleet witnessed`,
        { "data-import": "checkpoint" }],
      ["Plan expires", fmtTime(p.expires_at), { "data-import": "expires" }],
    ]);
    $("#import-plan-id").textContent = p.id;
    $("#import-ack").checked = false;
    $("#import-confirm").disabled = true;
    $("#import-plan").hidden = false;
  } catch (e) {
    $("#import-error").textContent = `Not planned: ${e.message}`;
  }
}

async function confirmImport() {
  const p = currentImport;
  if (!p) return;
  $("#import-confirm").disabled = true;
  $("#import-status").textContent = `Re-homing ${p.vm_id} on ${p.node}…`;
  try {
    const op = await follow(await api("POST", `/v1/imports/${encodeURIComponent(p.id)}/confirm`));
    currentImport = null;
    $("#import-plan").hidden = true;
    $("#import-status").textContent = `${p.vm_id} is pinned to ${op.result.node_id} now (was ${op.result.from_node}).`;
  } catch (e) {
    $("#import-status").textContent = "";
    $("#import-error").textContent = `Not imported: ${e.message}`;
  }
  refresh();
}

async function dropImport() {
  if (currentImport) await api("DELETE", `/v1/imports/${encodeURIComponent(currentImport.id)}`).catch(() => null);
  closeImport();
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
  $("#node-close").addEventListener("click", closeNode);
  $("#records-close").addEventListener("click", closeRecords);
  $("#records-newer").addEventListener("click", () => pageRecords(false));
  $("#records-older").addEventListener("click", () => pageRecords(true));
  $("#deposit-form").addEventListener("submit", deposit);
  $("#export-close").addEventListener("click", closeExport);
  $("#import-vm").addEventListener("click", openImport);
  $("#import-form").addEventListener("submit", planImport);
  $("#import-cancel").addEventListener("click", closeImport);
  $("#import-ack").addEventListener("change", (e) => { $("#import-confirm").disabled = !e.target.checked; });
  $("#import-confirm").addEventListener("click", confirmImport);
  $("#import-drop").addEventListener("click", dropImport);
  document.addEventListener("keydown", (e) => {
    if (e.key === "F9") { e.preventDefault(); openCreate(); }
    // Escape closes the open dialog, the node's history first (it opens over the rest)
    if (e.key === "Escape") {
      if (!$("#node-detail").hidden) closeNode();
      else if (!$("#records").hidden) closeRecords();
      else if (!$("#export").hidden) closeExport();
      else if (!$("#import").hidden) closeImport();
      else if (!$("#create").hidden) closeCreate();
    }
  });
  if (token) {
    $("#login-view").hidden = true;
    $("#main-view").hidden = false;
    $("#logout").hidden = false;
    refresh();
  } else {
    showLogin();
  }
});
