"""The F9 panel driven in Debian's Chromium through Debian's ChromeDriver and Selenium.

Used by tests/integration/test_panel_browser.py, which starts the daemons and passes in two
callbacks for what happens outside the browser: `settle(vm, node)` once the agent reported (the
harness waits until the guest's file system is on the disk image), `tamper(vm, node)` once
the VM is suspended (the harness changes the vault disk offline), `written(vm, node, n)` before
the export (n ledger lines on the disk image) and `carry(vm, node)` after it (the operator copies
the export to another node; returns that node and the file's SHA-256). Every step asserts on the
page's content and keeps a full-page screenshot under tests/browser/artifacts/; a failed step
raises with the page's text and keeps a screenshot named fail-*.

The browser's own dialogs (the panel asks before every lifecycle action) are answered here, not
by the driver: each is recorded in `self.dialogs` as "confirm: text" or "alert: text" and
accepted, so a step can check what it was asked and that no error was shown.
"""
import base64
import os
import re
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException, NoSuchElementException,
                                        StaleElementReferenceException,
                                        UnexpectedAlertPresentException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# This machine's network is closed: without these Chromium keeps opening connections that are
# refused, many at a time, and looks up Google's hosts at every start.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900"]


# The panel's one date format (panel/app.js fmtTime).
TIME_RE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


class StepFailed(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise StepFailed("assertion failed: %s" % what)


class Browser:
    """One headless Chromium with a fresh profile; ends it (and its profile) on close()."""

    def __init__(self):
        os.makedirs(ARTIFACTS, exist_ok=True)
        self.profile = tempfile.mkdtemp(prefix="tbx-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS + ["--user-data-dir=" + self.profile]:
            opts.add_argument(flag)
        # Dialogs stay open until this module answers them (see accept_dialogs).
        opts.set_capability("unhandledPromptBehavior", "ignore")
        opts.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.dialogs = []
        self.t0 = time.monotonic()

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def log(self, msg):
        print("[%.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    # --- dialogs and waiting -------------------------------------------------------------

    def accept_dialogs(self):
        """Records and accepts every open dialog (confirm or alert)."""
        while True:
            try:
                alert = self.driver.switch_to.alert
                text = alert.text
            except NoAlertPresentException:
                return
            # WebDriver does not say which kind a dialog is: the panel's confirmations read
            # "<verb> <vm>?" (panel/app.js), anything else is an alert (an error shown).
            kind = "confirm" if re.match(r"^\w+ \S+\?( |$)", text) else "alert"
            self.dialogs.append("%s: %s" % (kind, text))
            alert.accept()

    def until(self, fn, timeout, what):
        """Polls fn until it returns a truthy value; raises with the last value after timeout.
        A re-rendered element (stale) or an open dialog is retried, as a person would."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.accept_dialogs()
            try:
                last = fn()
                if last:
                    return last
            except (StaleElementReferenceException, NoSuchElementException, IndexError,
                    UnexpectedAlertPresentException) as e:
                last = "%s: %s" % (type(e).__name__, e)
            if time.monotonic() > deadline:
                raise StepFailed("timed out after %d s waiting for %s (last: %r)"
                                 % (timeout, what, last))
            time.sleep(0.25)

    # --- queries (each looks the element up afresh: the panel re-renders live) -------------

    def all(self, sel):
        return self.driver.find_elements(By.CSS_SELECTOR, sel)

    def one(self, sel):
        return self.driver.find_element(By.CSS_SELECTOR, sel)

    def count(self, sel):
        return len(self.all(sel))

    def text(self, sel):
        found = self.all(sel)
        return found[0].text if found else ""

    def visible(self, sel):
        found = self.all(sel)
        return bool(found) and found[0].is_displayed()

    def cells(self, row_sel):
        return [td.text for td in self.all(row_sel + " td")]

    def attr(self, sel, name):
        found = self.all(sel)
        return found[0].get_attribute(name) if found else None

    def wait_visible(self, sel, timeout=10, visible=True):
        self.until(lambda: self.visible(sel) == visible, timeout,
                   "%s to be %s" % (sel, "visible" if visible else "hidden"))

    # --- actions -------------------------------------------------------------------------

    def click(self, sel):
        self.until(lambda: self.one(sel).click() or True, 10, "a click on %s" % sel)

    def fill(self, sel, value):
        el = self.one(sel)
        el.clear()
        el.send_keys(value)

    def press(self, key):
        ActionChains(self.driver).send_keys(key).perform()

    def shot_element(self, name, sel):
        """One element's screenshot, at full resolution and whole even where it is taller than
        the window (a dialog read on its own)."""
        r = self.driver.execute_script(
            "const b = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return {x: b.left + scrollX, y: b.top + scrollY, width: b.width, height: b.height}", sel)
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "clip": dict(r, scale=1)})
        with open(os.path.join(ARTIFACTS, name + ".png"), "wb") as f:
            f.write(base64.b64decode(png["data"]))

    def shot(self, name):
        """A full-page screenshot through the DevTools protocol (WebDriver's is viewport-only)."""
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot",
                                          {"format": "png", "captureBeyondViewport": True})
        with open(os.path.join(ARTIFACTS, name + ".png"), "wb") as f:
            f.write(base64.b64decode(png["data"]))

    def step(self, name, fn):
        self.log("step " + name)
        try:
            fn()
        except (StepFailed, WebDriverException) as e:
            try:
                self.accept_dialogs()
                self.shot("fail-" + name)
                body = self.text("body")
            except WebDriverException:
                body = ""
            raise StepFailed("step '%s' failed: %s\n--- page text ---\n%s" % (name, e, body))
        self.accept_dialogs()
        self.shot(name)


def run_panel(url, token, image, settle, tamper, deposit, written, carry, entity="acme"):
    """Every step of the panel test; returns (vm_id, node_id, new node_id). deposit(vm, n) puts
    n records into the VM through fleetd's REST API (so that the records view has more than one
    page)."""
    return _in_browser(_steps, url, token, image, entity, (settle, tamper, deposit, written, carry))


def _in_browser(steps, *args):
    """Runs steps(browser, *args) in a fresh Chromium; logs the console; ends the browser."""
    b = Browser()
    try:
        return steps(b, *args)
    finally:
        for entry in b.driver.get_log("browser"):
            b.log("browser console: %s" % entry.get("message"))
        b.close()


def _steps(b, url, token, image, entity, outside):
    settle, tamper, deposit, written, carry = outside
    state = {}

    def login_refused():
        b.driver.get(url)
        b.wait_visible("#login-form")
        check(not b.visible("#main-view"), "the fleet is hidden before login")
        b.fill("#token", "tbx_" + "A" * 43)
        b.click("#login-form button[type=submit]")
        b.until(lambda: re.search("not valid", b.text("#login-error")), 5, "the refusal")
        check(not b.visible("#main-view"), "a wrong token shows nothing")

    def nodes():
        b.fill("#token", token)
        b.click("#login-form button[type=submit]")
        b.wait_visible("#main-view")
        # The roster: the controller's own entry (no vmhost), n1 and n2 (real vmhosts), n3 (none).
        b.until(lambda: b.count("#nodes tbody tr") == 4, 10, "four roster nodes")
        for nid in ("n1", "n2"):
            row = "#nodes tr[data-node=%s]" % nid
            c = b.until(lambda: (lambda c: len(c) > 6 and c[2] == "alive" and c)(b.cells(row)),
                        20, "node %s alive" % nid)
            check(re.match(r"^\d+ % of \d+ CPUs$", c[3]), "%s CPU shown (%s)" % (nid, c[3]))
            check(re.match(r"^\d+ MiB of \d+ MiB$", c[4]), "%s RAM shown (%s)" % (nid, c[4]))
            check(c[6].endswith("ago"), "%s heartbeat age shown (%s)" % (nid, c[6]))
        n3 = b.cells("#nodes tr[data-node=n3]")
        check(n3[2] == "unseen" and n3[6] == "never", "n3 (no vmhost) is unseen (%s)" % n3)
        check(b.cells("#nodes tr[data-node=ctl]")[1] == "cloud", "the controller's role")
        # The view updates live: the heartbeat age of n1 changes without any action.
        first = b.cells("#nodes tr[data-node=n1]")[6]
        b.until(lambda: b.cells("#nodes tr[data-node=n1]")[6] != first, 10,
                "the heartbeat age to change")
        check(re.search("ok|waiting", b.text("#fleet-health")), "fleet health shown")

    def images():
        # both vmhosts imported the test image: the fleet's list names it on n1 and n2
        row = "#images tr[data-image=%s]" % image
        c = b.until(lambda: (lambda c: len(c) > 4 and c[3] == "n1, n2" and c)(b.cells(row)),
                    20, "image %s listed on n1 and n2" % image)
        check(re.match(r"^[0-9a-f]{12}$", c[1]) and c[2].endswith("iB"),
              "the image's digest and size (%s)" % c)
        options = b.driver.execute_script(
            "return [...document.querySelectorAll('#image-names option')].map(o => o.value)")
        check(image in options, "the plan form's image picker offers %s (%s)" % (image, options))

    def create_form():
        check(not b.visible("#create"), "the form starts closed")
        b.click("#new-vm")
        b.wait_visible("#create")
        b.click("#create-cancel")
        b.wait_visible("#create", visible=False)
        b.press(Keys.F9)
        b.wait_visible("#create")
        focused = b.driver.execute_script("return document.activeElement.name")
        check(focused == "entity", "F9 focuses the entity (%s)" % focused)
        for name, value in (("entity", entity), ("memory_mib", "256"), ("vcpus", "1"),
                            ("image", image), ("vault_disk_mib", "64")):
            b.fill("#plan-form [name=%s]" % name, value)

    def plan():
        b.click("#plan-form button[type=submit]")
        b.wait_visible("#plan")
        summary = b.text("#plan-summary")
        m = re.search(r"Chosen node: (n[12])\b", summary)
        check(m, "a chosen node in the summary (%s)" % summary)
        state["node"] = m.group(1)
        check("expires" in summary and re.search(TIME_RE, summary),
              "the expiry (%s)" % summary)
        check(b.count("#candidates tbody tr") == 4, "every node is a candidate")
        chosen = b.cells("#candidates tr[data-candidate=%s]" % state["node"])
        check("fleet's choice" in chosen[0] and "MiB" in chosen[1], "the chosen row (%s)" % chosen)
        for nid in ("ctl", "n1", "n2", "n3"):
            c = b.cells("#candidates tr[data-candidate=%s]" % nid)
            check(re.match(r"(chosen|fits|refused)\b\W+\w+", c[3]), "candidate %s has a verdict and a reason (%s)"
                  % (nid, c[3]))
        check("choice" not in b.cells("#candidates tr[data-candidate=n3]")[0],
              "the unseen node is not chosen")
        check("512 MiB" in b.text("#plan-margin"), "the safety margin")
        check(not b.one("#plan-confirm").is_enabled(), "confirm needs the acknowledgement")
        check(b.count("#vms tbody tr[data-vm]") == 0, "a plan creates nothing")
        check("No Totebox VMs yet" in b.text("#vms tbody"), "the empty list says so")

    def vm_active():
        if not b.one("#plan-ack").is_selected():
            b.click("#plan-ack")
        check(b.one("#plan-confirm").is_enabled(), "acknowledged: confirm enabled")
        b.click("#plan-confirm")
        b.until(lambda: b.count("#vms tbody tr[data-vm]") == 1, 10, "the VM row")
        vm = b.attr("#vms tbody tr[data-vm]", "data-vm")
        check(vm and vm.startswith("tbx-%s-" % entity), "the VM id (%s)" % vm)
        state["vm"] = vm
        b.until(lambda: (lambda c: len(c) > 4 and c[3] == "active" and c[4] != "being created"
                         and c[2] == state["node"])(b.cells("#vms tbody tr[data-vm]")),
                90, "the VM to become active on the chosen node")
        check("vm.confirmed" in b.text("#audit tbody"), "the confirmation is in the audit record")

    def row():
        return '#vms tr[data-vm="%s"]' % state["vm"]

    def integrity_ok():
        b.until(lambda: (lambda c: len(c) > 5 and c[5] == "ok" and "running" in c[4])(
            b.cells(row())), 120, "the agent's first report (integrity ok)")
        b.until(lambda: "integrity: ok" in b.text("#fleet-health"), 10, "a green badge")
        check(re.search(r"\bok\b", b.attr("#fleet-health", "class")), "badge is green")
        check(not b.visible("#misplaced-banner"), "no misplaced banner")

    def verified():
        check(b.count(row() + " button[data-action=resume]") == 0, "no resume on an active VM")
        before = len(b.dialogs)
        b.click(row() + " button[data-action=verify]")
        b.until(lambda: re.search(r"UTC \(request, ", b.text(row() + " .verification")),
                60, "the requested verification's result on the VM")
        check(len(b.dialogs) == before,
              "verify asked nothing and showed no error (%s)" % b.dialogs[before:])
        b.until(lambda: b.count("#audit tr[data-kind='vm.verified']") >= 1, 10,
                "the verification in the audit record")

    def suspended():
        b.click(row() + " button[data-action=suspend]")
        b.until(lambda: (lambda c: len(c) > 4 and c[3] == "suspended" and "saved" in c[4])(
            b.cells(row())), 60, "the VM to be suspended (managed save)")
        check(any(d.startswith("confirm: suspend %s" % state["vm"]) for d in b.dialogs),
              "the action asked for confirmation (%s)" % b.dialogs)
        check(not any(d.startswith("alert") for d in b.dialogs), "no error shown (%s)" % b.dialogs)

    def resumed():
        resume = row() + " button[data-action=resume]"
        b.until(lambda: b.count(resume) == 1 and b.cells(row())[2] == state["node"]
                and b.cells("#nodes tr[data-node=%s]" % state["node"])[2] == "alive", 30,
                "the node back after its vmhost restarted")
        b.click(resume)
        b.until(lambda: (lambda c: c[3] == "active" and "running" in c[4])(b.cells(row())), 60,
                "the VM resumed (running, active)")

    def mismatch():
        b.until(lambda: "mismatch" in b.cells(row())[5], 120, "the integrity mismatch on the VM")
        check("highlight-mismatch" in b.attr(row(), "class"), "the VM row is highlighted")
        check(b.count(row() + " .integrity-mismatch") == 1, "the mismatch badge in the row")
        title = b.all(row() + " td")[5].get_attribute("title")
        check("unrecorded-file" in title, "the mismatch kind on the VM (%s)" % title)
        shown = b.cells(row())[5]
        check(re.search(r"unrecorded-file assets/smuggled\.bin", shown),
              "the mismatch named in the row (%s)" % shown)
        audit = "#audit tr[data-kind='integrity.mismatch']"
        b.until(lambda: b.count(audit) == 1, 10, "the audit entry")
        check("highlight-mismatch" in b.attr(audit, "class"), "the audit entry is highlighted")
        entry = b.text(audit)
        check(state["vm"] in entry and re.search(r"unrecorded-file assets/smuggled\.bin", entry),
              "the audit entry names the VM and the mismatch (%s)" % entry)
        b.until(lambda: "MISMATCH" in b.text("#fleet-health"), 10, "the badge")
        check(re.search(r"\bbad\b", b.attr("#fleet-health", "class")), "the badge is red")
        color = b.driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor",
                                        b.one("#fleet-health"))
        check(color == "rgb(179, 38, 30)", "the badge's colour (%s)" % color)

    # read in one script each: the records view re-renders with every refresh
    def fact(name):
        return b.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            "#records-summary [data-fact=%s]" % name)

    def seqs():
        return b.driver.execute_script(
            "return [...document.querySelectorAll('#records-list tbody tr[data-seq]')]"
            ".map((r) => Number(r.dataset.seq))")

    def records_view():
        deposit(state["vm"], 11)
        check(b.count(row() + " button[data-records]") == 1, "a records button on the active VM")
        b.click(row() + " button[data-records]")
        b.wait_visible("#records")
        b.until(lambda: fact("count") == "11", 60, "the vault's 11 records counted")
        check(state["vm"] in b.text("#records-title") and state["node"] in b.text("#records-title"),
              "the title names the VM and its node (%s)" % b.text("#records-title"))
        check(re.fullmatch(TIME_RE + r" \(#11, assets/00000011-api-11\.txt\)", fact("last")),
              "the last sealed record (%s)" % fact("last"))
        check(re.match(TIME_RE + r" \(.*\); 11 records sealed since$", fact("verified")),
              "the last verification, before the deposits (%s)" % fact("verified"))
        check(re.match(r"covers 11 records, root [0-9a-f]{16}…, signed " + TIME_RE, fact("checkpoint")),
              "the signed checkpoint (%s)" % fact("checkpoint"))
        # pages of ten, the newest first: 11 alone, then 10..1
        check(seqs() == [11] and b.text("#records-page") == "records 11–11 of 11", "the newest page (%s, %s)"
              % (seqs(), b.text("#records-page")))
        check(not b.one("#records-newer").is_enabled(), "nothing newer than the newest page")
        b.shot_element("10-records-dialog", "#records")

    def records_older():
        b.click("#records-older")
        b.until(lambda: seqs() == list(range(10, 0, -1)), 20, "the older page")
        check(b.text("#records-page") == "records 1–10 of 11", "the page's span (%s)" % b.text("#records-page"))
        check(not b.one("#records-older").is_enabled(), "nothing older than record 1")
        cells = b.cells('#records-list tr[data-seq="1"]')
        check(cells[2] == "assets/00000001-api-1.txt" and cells[3] == "9 B" and cells[5] == "—",
              "a ledger row in words (%s)" % cells)
        check(re.fullmatch(TIME_RE, cells[1]), "the sealing time (%s)" % cells[1])
        b.click("#records-newer")
        b.until(lambda: seqs() == [11], 20, "back to the newest page")

    def records_deposit():
        import hashlib
        data = b"an operator's note, deposited from the F9 panel\n" * 40
        fd, path = tempfile.mkstemp(prefix="tbx-deposit-", suffix=".txt")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            b.one("#deposit-file").send_keys(path)
            b.fill("#deposit-name", "operator note.txt")
            b.fill("#deposit-supersedes", "3")
            b.click("#deposit-submit")
            b.until(lambda: b.visible("#receipt"), 120, "the receipt")
        finally:
            os.unlink(path)
        got = {k: b.text("#receipt-fields [data-receipt=%s]" % k)
               for k in ("seq", "path", "size", "blake2b_256", "checkpoint", "proof", "supersedes")}
        check(got["seq"] == "#12" and got["path"] == "assets/00000012-operator_note.txt",
              "the receipt's number and path (%s)" % got)
        check(got["size"] == "%d bytes" % len(data), "the size (%s)" % got)
        check(got["blake2b_256"] == hashlib.blake2b(data, digest_size=32).hexdigest(),
              "the BLAKE2b-256 of what was picked (%s)" % got)
        check(re.match(r"signed tree head over 12 records, root [0-9a-f]{64}, signed " + TIME_RE,
                       got["checkpoint"]), "the checkpoint that covers it (%s)" % got)
        check(got["supersedes"] == "#3" and got["proof"].startswith("leaf 11,"), "(%s)" % got)
        check(re.fullmatch(r"f-[0-9a-f]{32}", b.text("#receipt-fields [data-receipt=deposit_id]")),
              "the deposit id fleetd drew, for a retry")
        check("Sealed as #12" in b.text("#deposit-status"), "the status line")
        b.until(lambda: fact("count") == "12" and seqs() == [12, 11], 20, "the list updated")
        check(b.cells('#records-list tr[data-seq="12"]')[5] == "#3", "the correction shown")
        b.until(lambda: b.count("#audit tr[data-kind='vm.deposit']") == 12, 20,
                "every deposit in the audit record")
        b.shot_element("12-deposit-receipt-dialog", "#records")

    def records_refused():
        # a record the agent refuses (a supersedes that is not in the ledger): the error, no receipt
        fd, path = tempfile.mkstemp(prefix="tbx-deposit-", suffix=".txt")
        os.write(fd, b"x")
        os.close(fd)
        try:
            b.one("#deposit-file").send_keys(path)
            b.fill("#deposit-name", "")
            b.fill("#deposit-supersedes", "999")
            b.click("#deposit-submit")
            b.until(lambda: b.text("#records-error").startswith("Not deposited:"), 60, "the refusal")
        finally:
            os.unlink(path)
        check(not b.visible("#receipt"), "no receipt for a refused deposit")
        check(fact("count") == "12", "nothing sealed")
        b.shot_element("13-deposit-refused-dialog", "#records")

    def records_close():
        b.press(Keys.ESCAPE)
        b.wait_visible("#records", visible=False)

    def exported():
        b.click(row() + " button[data-action=suspend]")
        b.until(lambda: (lambda c: len(c) > 4 and c[3] == "suspended" and "saved" in c[4])(
            b.cells(row())), 60, "the VM suspended for its export")
        b.until(lambda: b.count(row() + " button[data-action=export]") == 1, 20, "the export action")
        b.click(row() + " button[data-action=export]")
        b.until(lambda: b.visible("#export"), 300, "the export's result")
        check(any(d.startswith("confirm: export %s?" % state["vm"]) for d in b.dialogs),
              "the export asked for confirmation (%s)" % b.dialogs)
        got = {k: b.text("#export-fields [data-export=%s]" % k)
               for k in ("file", "size", "sha256", "blake2b_256", "checkpoint", "signature")}
        check(got["file"].endswith("/exports/%s.tar" % state["vm"]), "the file on its node (%s)" % got)
        check(re.fullmatch(r"\d+ bytes", got["size"]), "the size (%s)" % got)
        check(re.fullmatch(r"[0-9a-f]{64}", got["sha256"]) and
              re.fullmatch(r"[0-9a-f]{64}", got["blake2b_256"]), "the checksums (%s)" % got)
        check(re.search(r"witnessed: \d+ records?$", got["checkpoint"]), "the checkpoint (%s)" % got)
        check(state["node"] in b.text("#export-title"), "the node named (%s)" % b.text("#export-title"))
        cmds = b.text("#export-check")
        check("sha256sum -c %s.tar.sha256" % state["vm"] in cmds and "openssl pkeyutl -verify" in cmds
              and "BEGIN PUBLIC KEY" in cmds, "the offline check's commands (%s)" % cmds)
        state["export"] = got
        b.shot_element("15-export-dialog", "#export")
        b.press(Keys.ESCAPE)
        b.wait_visible("#export", visible=False)

    def import_planned():
        b.click("#import-vm")
        b.wait_visible("#import")
        b.fill("#import-file", state["vm"] + ".tar")
        Select(b.one("#import-node")).select_by_value(state["other"])
        b.click("#import-submit")
        b.until(lambda: b.visible("#import-plan"), 120, "the import plan")
        got = {k: b.text("#import-fields [data-import=%s]" % k) for k in ("vm", "from", "to", "file")}
        check(got["vm"] == state["vm"] and got["from"].startswith(state["node"] + " ") and
              got["to"].startswith(state["other"] + " "), "the re-homing named (%s)" % got)
        check(state["export"]["sha256"] in got["file"], "the file the node checked (%s)" % got)
        check(not b.one("#import-confirm").is_enabled(), "no confirmation before the acknowledgement")
        # the VMs table redraws live: read its row as a person would, again if it was redrawn
        b.until(lambda: b.cells(row())[2] == state["node"], 10, "nothing moved by the plan")
        b.shot_element("16-import-plan-dialog", "#import")

    def import_confirmed():
        b.click("#import-ack")
        b.click("#import-confirm")
        b.until(lambda: "is pinned to %s now" % state["other"] in b.text("#import-status"), 300,
                "the re-homing")
        check(not b.text("#import-error"), "no error (%s)" % b.text("#import-error"))
        b.until(lambda: (lambda c: c[2] == state["other"] and c[3] == "active")(b.cells(row())), 30,
                "the VM's row on its new node, active")
        b.until(lambda: b.count("#audit tr[data-kind='vm.rehomed']") == 1, 20,
                "the re-homing in the audit record")
        b.press(Keys.ESCAPE)
        b.wait_visible("#import", visible=False)

    b.step("01-login-refused", login_refused)
    b.step("02-nodes", nodes)
    b.step("02b-images", images)
    b.step("03-create-form", create_form)
    b.step("04-plan", plan)
    b.step("05-vm-active", vm_active)
    b.step("06-integrity-ok", integrity_ok)
    b.step("06b-verified", verified)
    settle(state["vm"], state["node"])
    b.step("07-suspended", suspended)
    # The harness stops the node's vmhost, discards the saved RAM (so the guest boots cold and
    # reads its disk), smuggles a file into the vault's sealed assets, and restarts vmhost.
    tamper(state["vm"], state["node"])
    b.step("08-resumed", resumed)
    b.step("09-mismatch", mismatch)
    b.step("10-records", records_view)
    b.step("11-records-older", records_older)
    b.step("12-deposit-receipt", records_deposit)
    b.step("13-deposit-refused", records_refused)
    b.step("14-records-close", records_close)
    written(state["vm"], state["node"], 12)
    b.step("15-exported", exported)
    state["other"], sha = carry(state["vm"], state["node"])
    check(sha == state["export"]["sha256"], "the panel showed the file's SHA-256 (%s)" % sha)
    b.step("16-import-plan", import_planned)
    b.step("17-import-confirmed", import_confirmed)
    b.log("all steps passed (VM %s on %s, re-homed on %s)" % (state["vm"], state["node"], state["other"]))
    return state["vm"], state["node"], state["other"]


def run_panel_views(url, token, vms, break_chain):
    """The views an operator reads, against a fleet the caller prepared (fake nodes, no guests):
    the nodes' CPU and RAM charts of the last hour, the VMs' lifecycle and state as two fields
    and only the actions their state allows, the audit record with its actor, one date format,
    readable details and the chain's status (then broken by the caller: break_chain()), and
    Escape closing each dialog. vms: {"active", "suspended", "archived", "failed"} -> VM id."""
    _in_browser(_views, url, token, vms, break_chain)


def _views(b, url, token, vms, break_chain):
    def row(kind):
        return '#vms tr[data-vm="%s"]' % vms[kind]

    def login():
        b.driver.get(url)
        b.wait_visible("#login-form")
        b.fill("#token", token)
        b.click("#login-form button[type=submit]")
        b.wait_visible("#main-view")
        b.until(lambda: b.count("#vms tbody tr[data-vm]") == len(vms), 10, "every VM listed")
        c = b.until(lambda: (lambda c: len(c) > 6 and c[2] == "alive" and c)(
            b.cells("#nodes tr[data-node=n1]")), 10, "n1 alive")
        check(re.match(r"^\d+ % of 4 CPUs$", c[3]), "CPU rounded (%s)" % c[3])

    def node_history():
        check(not b.visible("#node-detail"), "the history starts closed")
        b.click('#nodes button[data-history="n1"]')
        b.wait_visible("#node-detail")
        b.until(lambda: b.count("#node-charts svg.chart") == 2, 10, "two charts")
        check("Node n1" in b.text("#node-title"), "the node named (%s)" % b.text("#node-title"))
        for sel in ("#node-charts svg.chart polyline.cpu", "#node-charts svg.chart polyline.used",
                    "#node-charts svg.chart polyline.committed"):
            pts = b.attr(sel, "points").split()
            check(len(pts) >= 8, "%s has the samples (%d points)" % (sel, len(pts)))
            xs = [float(p.split(",")[0]) for p in pts]
            check(xs == sorted(xs) and xs[-1] > 300, "%s runs left to right up to now" % sel)
        caps = b.text("#node-charts")
        check(re.search(r"CPU: now \d+ %, peak \d+ %", caps), "the CPU caption (%s)" % caps)
        check(re.search(r"in use [\d.]+ GiB of 16\.0 GiB", caps), "the RAM caption (%s)" % caps)
        check(re.search(r"samples, one per heartbeat, since " + TIME_RE, caps), "the span")
        check(b.driver.execute_script("return document.querySelectorAll('script').length") == 1,
              "no script but the panel's own")

    def history_escape():
        b.press(Keys.ESCAPE)
        b.wait_visible("#node-detail", visible=False)
        b.press(Keys.F9)
        b.wait_visible("#create")
        b.press(Keys.ESCAPE)
        b.wait_visible("#create", visible=False)

    def snapshot(sel):
        """The rows of a table read in one go (the panel re-renders every two seconds): each
        row's cell texts, cell classes, actions and computed colours."""
        return b.driver.execute_script("""
            return [...document.querySelectorAll(arguments[0])].map((r) => ({
              vm: r.dataset.vm, kind: r.dataset.kind,
              cells: [...r.cells].map((c) => c.innerText),
              classes: [...r.cells].map((c) => c.className),
              colours: [...r.cells].map((c) => getComputedStyle(c).color),
              actions: [...r.querySelectorAll('button[data-action]')].map((e) => e.dataset.action)}));
        """, sel)

    def vm_fields():
        heads = [th.text for th in b.all("#vms thead th")]
        check(heads[3:5] == ["Lifecycle", "State"], "two fields (%s)" % heads)
        want = {"active": ("active", "running", "run-ok", ["suspend", "verify", "archive"]),
                "suspended": ("suspended", "saved to disk", "run-quiet", ["resume", "archive", "export"]),
                "archived": ("archived", "shut off", "run-quiet", ["export"]),
                "failed": ("—", "creation failed", "run-bad", ["retire"])}

        def rows_ready():
            rows = {r["vm"]: r for r in snapshot("#vms tbody tr[data-vm]")}
            return all(vms[k] in rows and rows[vms[k]]["cells"][4].startswith(w[1])
                       for k, w in want.items()) and "UTC" in rows.get(vms["active"], {
                           "cells": [""] * 7})["cells"][6] and rows
        rows = b.until(rows_ready, 30, "every VM's state")
        for kind, (lc, st, cls, actions) in want.items():
            r = rows[vms[kind]]
            check(r["cells"][3] == lc, "%s: lifecycle %s (%s)" % (kind, lc, r["cells"]))
            check(cls in r["classes"][4], "%s: state styled %s (%s)" % (kind, cls, r["classes"]))
            check(r["actions"] == actions, "%s: actions %s (shown: %s)" % (kind, actions, r["actions"]))
        last = rows[vms["active"]]["cells"][6]
        check(re.fullmatch(TIME_RE + r" \(schedule, 40 ms, 3 records, 0 mismatches\)", last),
              "the last verification in words (%s)" % last)
        check(rows[vms["archived"]]["cells"][6] == "never", "never verified")
        colour = rows[vms["archived"]]["colours"][4]
        check(colour != "rgb(30, 107, 53)", "an archived VM's state is not green (%s)" % colour)
        check(rows[vms["active"]]["colours"][4] == "rgb(30, 107, 53)", "a running active VM is green")

    def audit():
        heads = [th.text for th in b.all("#audit thead th")]
        check(heads == ["#", "Time", "Actor", "Event", "Subject", "Details"], "columns %s" % heads)
        b.until(lambda: "chain intact" in b.text("#audit-chain"), 20, "the chain's status")
        check(re.match("Checked " + TIME_RE, b.text("#audit-chain")), "when it was checked")
        # the fake nodes witness nothing: amber ("behind"), never red while the chain holds
        check("bad" not in b.attr("#audit-chain", "class"), "chain status not red")
        rows = b.until(lambda: (lambda r: len(r) >= 8 and r)(snapshot("#audit tbody tr")), 10,
                       "the record")
        for r in rows:
            c = r["cells"]
            check(re.fullmatch(TIME_RE, c[1]), "one date format (%s)" % c[1])
            check("{" not in c[5] and '":' not in c[5], "details in words, not JSON (%s)" % c[5])
            check(c[2] not in ("", "—"), "an actor on every entry (%s)" % c)
        by_kind = {r["kind"]: r["cells"] for r in reversed(rows)}  # the first of each kind
        conf = by_kind["vm.confirmed"]
        check(conf[2] == "tester", "the operator's token named as actor (%s)" % conf)
        state = by_kind["node.state"]
        check(state[2] == "fleetd" and "unseen → alive" in state[5], "a state change in words (%s)" % state)
        tok = by_kind["token.created"]
        check(tok[2] == "fleetctl (on the controller)", "fleetctl as actor (%s)" % tok)

    def chain_broken():
        break_chain()
        b.until(lambda: "CHAIN BROKEN" in b.text("#audit-chain"), 30, "the broken chain shown")
        check("bad" in b.attr("#audit-chain", "class"), "chain status red")
        check("entry 2" in b.text("#audit-chain"), "the broken entry named (%s)" % b.text("#audit-chain"))
        b.until(lambda: "broken" in (b.attr("#audit tr[data-seq='2']", "class") or ""), 10,
                "the broken entry marked in the record")
        b.until(lambda: "AUDIT CHAIN BROKEN" in b.text("#fleet-health"), 10, "the fleet badge")
        check(re.search(r"\bbad\b", b.attr("#fleet-health", "class")), "the badge is red")

    def plan_form(entity, memory, target):
        if not b.visible("#create"):
            b.press(Keys.F9)
            b.wait_visible("#create")
        for name, value in (("entity", entity), ("memory_mib", str(memory)), ("vcpus", "1"),
                            ("image", "base"), ("vault_disk_mib", "64")):
            b.fill("#plan-form [name=%s]" % name, value)
        picker = Select(b.one("#plan-node"))
        offered = [o.get_attribute("value") for o in picker.options]
        check(offered[0] == "" and {"n1", "n2", "n3"} <= set(offered),
              "the target picker offers the fleet's choice and every node (%s)" % offered)
        picker.select_by_value(target)
        b.click("#plan-form button[type=submit]")
        b.until(lambda: b.visible("#plan") and b.count("#plan-compare tbody tr") == 2, 10,
                "the plan with the target beside the fleet's choice")

    def compare():
        return {r["cells"][0]: r["cells"] for r in b.driver.execute_script("""
            return [...document.querySelectorAll('#plan-compare tbody tr')].map((r) => ({
              cells: [...r.cells].map((c) => c.innerText)}));""")}

    def plan_target_fits():
        # n2 has the most RAM available: the fleet's choice; the operator names n1, which fits
        plan_form("steered", 512, "n1")
        rows = compare()
        check(rows["Your target"][1] == "n1" and rows["Your target"][2].startswith("fits"),
              "the target's verdict (%s)" % rows)
        check(rows["Fleet's choice"][1] == "n2" and rows["Fleet's choice"][2].startswith("chosen: "),
              "the fleet's own choice beside it (%s)" % rows)
        summary = b.text("#plan-summary")
        check("Your target: node n1, which fits" in summary and "fleet would choose node n2" in summary,
              "the summary names both (%s)" % summary)
        check("your target" in b.cells("#candidates tr[data-candidate=n1]")[0] and
              "fleet's choice" in b.cells("#candidates tr[data-candidate=n2]")[0],
              "the candidates mark both")
        b.shot_element("p07-plan-target-dialog", "#create")

    def plan_target_refused():
        b.click("#plan-drop")  # the first plan, dropped (after its screenshot)
        b.wait_visible("#create", visible=False)
        # 12000 MiB on n1 (9000 available) would break its margin: the quote says so, and the
        # confirmation is refused with the figures
        plan_form("steered", 12000, "n1")
        rows = compare()
        check(rows["Your target"][2].startswith("does not fit"), "the target does not fit (%s)" % rows)
        check(rows["Your target"][4].startswith("−3000 MiB (must stay ≥ 512 MiB)"), "short of the margin (%s)" % rows)
        check("on node n1 (my target" in b.text("label.confirm"), "the acknowledgement names the target")
        b.shot_element("p08-plan-target-dialog", "#create")
        check(rows["Fleet's choice"][1] == "n2", "the fleet would choose n2 (%s)" % rows)
        check("does NOT fit" in b.text("#plan-summary"), "said in the summary")
        check("verdict-does-not-fit" in b.attr("#plan-compare tr[data-compare=target] td:nth-child(3)", "class"),
              "the verdict in red")
        b.click("#plan-ack")
        b.click("#plan-confirm")
        b.until(lambda: "n1" in b.text("#create-error"), 10, "the refusal with the node named")
        check(b.count('#vms tbody tr[data-vm]') == len(vms), "nothing created (%s)" % b.text("#create-error"))

    def plan_target_close():
        b.press(Keys.ESCAPE)
        b.wait_visible("#create", visible=False)

    def retire():
        r = row("failed")
        check(b.count(r + " button[data-action=retire]") == 1, "retire offered on the failed VM")
        for kind in ("active", "suspended", "archived"):
            check(b.count(row(kind) + " button[data-action=retire]") == 0, "no retire on %s" % kind)
        before = len(b.dialogs)
        b.click(r + " button[data-action=retire]")
        b.until(lambda: b.cells(r)[3] == "retired", 20, "the failed VM retired")
        asked = b.dialogs[before:]
        check(asked and asked[0].startswith("confirm: retire %s?" % vms["failed"]) and
              "stays in the audit record" in asked[0], "retire asked first (%s)" % asked)
        check(not any(d.startswith("alert") for d in asked), "no error shown (%s)" % asked)
        check(b.count(r + " button[data-action]") == 0, "nothing more to do on a retired VM")
        check("run-quiet" in b.attr(r + " td:nth-child(5)", "class"), "no longer shown as an alarm")
        b.until(lambda: b.count("#audit tr[data-kind='vm.retired']") == 1, 10, "audited")

    b.step("p01-login", login)
    b.step("p02-node-history", node_history)
    b.step("p03-escape-closes", history_escape)
    b.step("p04-vm-fields-actions", vm_fields)
    b.step("p05-audit", audit)
    b.step("p07-plan-target-fits", plan_target_fits)
    b.step("p08-plan-target-refused", plan_target_refused)
    b.step("p09-plan-target-close", plan_target_close)
    b.step("p10-retire", retire)
    b.step("p06-chain-broken", chain_broken)
