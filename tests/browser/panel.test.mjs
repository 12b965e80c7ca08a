// The F9 panel in a real Chromium (playwright-core), against a real fleetd with real vmhosts.
// tests/integration/test_panel_browser.py starts the daemons and runs this script with
//   PANEL_URL    fleetd's base URL (it serves the panel at /)
//   PANEL_TOKEN  a valid API token (fleetctl token create)
//   PANEL_IMAGE  the image name imported on every node
// and talks to it over stdio: it prints "SETTLE <vm> <node>" once the agent reported (the harness
// waits until the guest's file system is on the disk image) and "TAMPER <vm> <node>" once the VM
// is suspended (the harness changes the vault disk offline), and waits for "done" after each.
// Every step asserts on the page's content and keeps a screenshot under artifacts/; any failed
// step exits non-zero with the page's text and a screenshot named fail-*.
import { createInterface } from "node:readline";
import { launch, shot } from "./browser.mjs";

const URL = process.env.PANEL_URL;
const TOKEN = process.env.PANEL_TOKEN;
const IMAGE = process.env.PANEL_IMAGE || "totebox-test";
const ENTITY = process.env.PANEL_ENTITY || "acme";
const t0 = Date.now();
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

/* Asks the harness to act outside the browser and waits for its "done". */
async function ask(verb, ...args) {
  console.log([verb, ...args].join(" "));
  const answer = await lines.next();
  check(!answer.done && answer.value.trim() === "done", `the harness did ${verb} (${answer.value})`);
}

function check(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

/* Polls fn (async) until it returns a truthy value; throws with the last value after timeout. */
async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await fn(); } catch (e) { last = e.message; }
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const text = (page, sel) => page.locator(sel).first().innerText();
const cells = (row) => row.locator("td").allInnerTexts();

async function step(page, name, fn) {
  log(`step ${name}`);
  try {
    await fn();
  } catch (e) {
    await shot(page, `fail-${name}`).catch(() => null);
    const body = await page.locator("body").innerText().catch(() => "");
    throw new Error(`step '${name}' failed: ${e.message}\n--- page text ---\n${body}`);
  }
  await shot(page, name);
}

async function run() {
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(`${d.type()}: ${d.message()}`); d.accept(); });
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  let vmId = null, nodeId = null;
  try {
    await step(page, "01-login-refused", async () => {
      await page.goto(URL);
      await page.locator("#login-form").waitFor({ state: "visible" });
      check(await page.locator("#main-view").isHidden(), "the fleet is hidden before login");
      await page.fill("#token", "tbx_" + "A".repeat(43));
      await page.click("#login-form button[type=submit]");
      await until(async () => /not valid/.test(await text(page, "#login-error")), 5000, "the refusal");
      check(await page.locator("#main-view").isHidden(), "a wrong token shows nothing");
    });

    await step(page, "02-nodes", async () => {
      await page.fill("#token", TOKEN);
      await page.click("#login-form button[type=submit]");
      await page.locator("#main-view").waitFor({ state: "visible" });
      // The roster: the controller's own entry (no vmhost here), n1 and n2 (real vmhosts), n3 (none).
      await until(async () => (await page.locator("#nodes tbody tr").count()) === 4, 10000, "four roster nodes");
      for (const id of ["n1", "n2"]) {
        const row = page.locator(`#nodes tr[data-node=${id}]`);
        const c = await until(async () => { const c = await cells(row); return c[2] === "alive" && c; },
          20000, `node ${id} alive`);
        check(/^\d+\.\d % of \d+$/.test(c[3]), `${id} CPU shown (${c[3]})`);
        check(/^\d+ MiB of \d+ MiB$/.test(c[4]), `${id} RAM shown (${c[4]})`);
        check(/ago$/.test(c[6]), `${id} heartbeat age shown (${c[6]})`);
      }
      const n3 = await cells(page.locator("#nodes tr[data-node=n3]"));
      check(n3[2] === "unseen" && n3[6] === "never", `n3 (no vmhost) is unseen (${n3})`);
      check((await cells(page.locator("#nodes tr[data-node=ctl]")))[1] === "cloud", "the controller's role");
      // The view updates live: the heartbeat age of n1 changes without any action.
      const first = (await cells(page.locator("#nodes tr[data-node=n1]")))[6];
      await until(async () => (await cells(page.locator("#nodes tr[data-node=n1]")))[6] !== first,
        10000, "the heartbeat age to change");
      check(/ok|waiting/.test(await text(page, "#fleet-health")), "fleet health shown");
    });

    await step(page, "03-create-form", async () => {
      check(await page.locator("#create").isHidden(), "the form starts closed");
      await page.click("#new-vm");
      await page.locator("#create").waitFor({ state: "visible" });
      await page.click("#create-cancel");
      await page.locator("#create").waitFor({ state: "hidden" });
      await page.keyboard.press("F9");
      await page.locator("#create").waitFor({ state: "visible" });
      check(await page.evaluate(() => document.activeElement.name) === "entity", "F9 focuses the entity");
      await page.fill("#plan-form [name=entity]", ENTITY);
      await page.fill("#plan-form [name=memory_mib]", "256");
      await page.fill("#plan-form [name=vcpus]", "1");
      await page.fill("#plan-form [name=image]", IMAGE);
      await page.fill("#plan-form [name=vault_disk_mib]", "64");
    });

    await step(page, "04-plan", async () => {
      await page.click("#plan-form button[type=submit]");
      await page.locator("#plan").waitFor({ state: "visible" });
      const summary = await text(page, "#plan-summary");
      const m = /Chosen node: (n[12])\b/.exec(summary);
      check(m, `a chosen node in the summary (${summary})`);
      nodeId = m[1];
      check(/expires/.test(summary) && /\d{4}-\d\d-\d\dT/.test(summary), `the expiry (${summary})`);
      const rows = page.locator("#candidates tbody tr");
      check(await rows.count() === 4, "every node is a candidate");
      const chosen = await cells(page.locator(`#candidates tr[data-candidate=${nodeId}]`));
      check(/chosen/.test(chosen[0]) && /MiB/.test(chosen[1]), `the chosen row (${chosen})`);
      for (const id of ["ctl", "n1", "n2", "n3"]) {
        const c = await cells(page.locator(`#candidates tr[data-candidate=${id}]`));
        check(/\S+: \S+/.test(c[3]), `candidate ${id} has a verdict and a reason (${c[3]})`);
      }
      const n3 = await cells(page.locator("#candidates tr[data-candidate=n3]"));
      check(!/chosen/.test(n3[0]), "the unseen node is not chosen");
      check(/512 MiB/.test(await text(page, "#plan-margin")), "the safety margin");
      check(await page.locator("#plan-confirm").isDisabled(), "confirm needs the acknowledgement");
      check(await page.locator("#vms tbody tr").count() === 0, "a plan creates nothing");
    });

    await step(page, "05-vm-active", async () => {
      await page.check("#plan-ack");
      check(await page.locator("#plan-confirm").isEnabled(), "acknowledged: confirm enabled");
      await page.click("#plan-confirm");
      const row = page.locator("#vms tbody tr").first();
      await until(async () => (await page.locator("#vms tbody tr").count()) === 1, 10000, "the VM row");
      vmId = await row.getAttribute("data-vm");
      check(vmId && vmId.startsWith(`tbx-${ENTITY}-`), `the VM id (${vmId})`);
      await until(async () => { const c = await cells(row); return /^active/.test(c[3]) && c[2] === nodeId && c; },
        90000, "the VM to become active on the chosen node");
      const audit = await page.locator("#audit tbody").innerText();
      check(/vm\.confirmed/.test(audit), "the confirmation is in the audit record");
    });

    const vmRow = () => page.locator(`#vms tr[data-vm="${vmId}"]`);
    await step(page, "06-integrity-ok", async () => {
      await until(async () => { const c = await cells(vmRow()); return c[5] === "ok" && /running/.test(c[3]); },
        120000, "the agent's first report (integrity ok)");
      await until(async () => /integrity: ok/.test(await text(page, "#fleet-health")), 10000, "a green badge");
      check(/\bok\b/.test(await page.locator("#fleet-health").getAttribute("class")), "badge is green");
      check(await page.locator("#misplaced-banner").isHidden(), "no misplaced banner");
    });

    await step(page, "06b-verified", async () => {
      check(await vmRow().locator("button[data-action=resume]").count() === 0, "no resume on an active VM");
      const before = dialogs.length;
      await vmRow().locator("button[data-action=verify]").click();
      await until(async () => /verified .*\(request, /.test(await vmRow().locator(".verification").innerText().catch(() => "")),
        60000, "the requested verification's result on the VM");
      check(dialogs.length === before, `verify asked nothing and showed no error (${dialogs.slice(before)})`);
      await until(async () => (await page.locator("#audit tr[data-kind='vm.verified']").count()) >= 1, 10000,
        "the verification in the audit record");
    });

    await ask("SETTLE", vmId, nodeId);
    await step(page, "07-suspended", async () => {
      await vmRow().locator("button[data-action=suspend]").click();
      await until(async () => { const c = await cells(vmRow()); return c[4] === "suspended" && /saved/.test(c[3]); },
        60000, "the VM to be suspended (managed save)");
      check(dialogs.some((d) => d.startsWith(`confirm: suspend ${vmId}`)), "the action asked for confirmation");
      check(!dialogs.some((d) => d.startsWith("alert")), `no error shown (${dialogs})`);
    });

    // The harness stops the node's vmhost, discards the saved RAM (so the guest boots cold and
    // reads its disk), smuggles a file into the vault's sealed assets, and restarts vmhost.
    await ask("TAMPER", vmId, nodeId);

    await step(page, "08-resumed", async () => {
      const resume = vmRow().locator("button[data-action=resume]");
      await until(async () => (await resume.count()) === 1 && (await cells(vmRow()))[2] === nodeId &&
        (await cells(page.locator(`#nodes tr[data-node=${nodeId}]`)))[2] === "alive", 30000,
        "the node back after its vmhost restarted");
      await resume.click();
      await until(async () => { const c = await cells(vmRow()); return c[4] === "active" && /running/.test(c[3]); },
        60000, "the VM resumed (running, active)");
    });

    await step(page, "09-mismatch", async () => {
      await until(async () => /mismatch/.test((await cells(vmRow()))[5]), 120000, "the integrity mismatch on the VM");
      check(/highlight-mismatch/.test(await vmRow().getAttribute("class")), "the VM row is highlighted");
      check(await vmRow().locator(".integrity-mismatch").count() === 1, "the mismatch badge in the row");
      const title = await vmRow().locator("td").nth(5).getAttribute("title");
      check(/unrecorded-file/.test(title), `the mismatch kind on the VM (${title})`);
      const shown = (await cells(vmRow()))[5];
      check(/unrecorded-file assets\/smuggled\.bin/.test(shown), `the mismatch named in the row (${shown})`);
      const audit = page.locator("#audit tr[data-kind='integrity.mismatch']").first();
      await until(async () => (await audit.count()) === 1, 10000, "the audit entry");
      check(/highlight-mismatch/.test(await audit.getAttribute("class")), "the audit entry is highlighted");
      const entry = await audit.innerText();
      check(entry.includes(vmId) && /unrecorded-file assets\/smuggled\.bin/.test(entry),
        `the audit entry names the VM and the mismatch (${entry})`);
      await until(async () => /MISMATCH/.test(await text(page, "#fleet-health")), 10000, "the badge");
      check(/\bbad\b/.test(await page.locator("#fleet-health").getAttribute("class")), "the badge is red");
      const color = await page.locator("#fleet-health").evaluate((e) => getComputedStyle(e).backgroundColor);
      check(color === "rgb(179, 38, 30)", `the badge's colour (${color})`);
    });
    log(`all steps passed (VM ${vmId} on ${nodeId})`);
  } finally {
    await browser.close();
  }
}

run().then(() => process.exit(0), (e) => { console.error(e.stack || String(e)); process.exit(1); });
