"""Backup and restore of fleetd's state, and its schema versions (docs/operations.md).

A backup is taken with `fleetctl backup` while a writer keeps planning and confirming; the
controller is then killed, and the backup restored with `fleetctl restore` into a new
controller's empty state directory on other ports: every VM confirmed before the backup began
is there, the tokens work, the audit record verifies. Damaged, cut-short, wrongly sealed and
foreign backups are refused with a clear message and leave nothing behind. A store of a newer
schema, or of another fleet, keeps fleetd from starting, with a message that says why."""
import os
import signal
import sqlite3
import threading
import time

import test_fleetd_harness as H

PLAN = {"memory_mib": 256, "vcpus": 1, "image": "base", "vault_disk_mib": 64}


def passphrase_file(f, text="correct horse battery staple"):
    path = os.path.join(f.dir, "pass-%d" % len(text))
    with open(path, "w") as fp:
        fp.write(text + "\n")
    return path


def new_controller(f1):
    """A second fleetd on its own ports and empty state dir, with f1's roster and token."""
    f2 = H.Fleetd(nodes=2, auth=False)
    f2.write_roster(H.roster_doc(2))
    f2.settings["auth"] = "true"
    f2.token = f1.token
    assert not os.path.exists(f2.state_dir)
    return f2


def leftovers(f):
    parent = os.path.dirname(f.state_dir)
    return [n for n in os.listdir(parent) if ".restore-" in n]


def test_backup_while_writing_then_restore_on_a_new_controller():
    f1 = H.Fleetd(nodes=2)
    f2 = None
    confirmed = []  # (time the answer came, vm id)
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                st, plan = f1.json("POST", "/v1/plans", dict(PLAN, entity="w%d" % i))
                if st != 201:
                    continue
                st, doc = f1.json("POST", "/v1/plans/%s/confirm" % plan["id"])
                if st == 202:
                    confirmed.append((time.time(), doc["vm_id"]))
            except OSError as e:  # the kill at the end
                errors.append(e)
                return

    try:
        f1.start()
        f1.hb(1, avail=10**6, total=2 * 10**6)
        f1.hb(2, avail=10**6, total=2 * 10**6)
        f1.wait(lambda: f1.node("n1")["state"] == "alive")
        t = threading.Thread(target=writer)
        t.start()
        f1.wait(lambda: len(confirmed) >= 5, timeout=30, what="five confirmations")
        backup = os.path.join(f1.dir, "fleet.backup")
        began = time.time()
        r = f1.ctl("backup", backup, "--passphrase-file", passphrase_file(f1))
        ended = time.time()
        assert "sealed with the passphrase" in r.stdout, r.stdout
        assert os.stat(backup).st_mode & 0o777 == 0o600
        f1.wait(lambda: any(ts > ended for ts, _ in confirmed), timeout=30,
                what="a confirmation after the backup")
        assert [e["actor"] for e in f1.audit("fleetd.backup")] == ["token:tester"]
        before = [vm for ts, vm in confirmed if ts < began]
        after = [vm for ts, vm in confirmed if ts > ended]
        assert before and after
        f1.stop(signal.SIGKILL)  # the controller is lost
        stop.set()
        t.join()

        f2 = new_controller(f1)
        r = f2.ctl("restore", backup, "--passphrase-file", passphrase_file(f1),
                   "--roster", f2.roster_file)
        assert "audit entries verified" in r.stdout, r.stdout
        assert os.stat(os.path.join(f2.state_dir, "pin.key")).st_mode & 0o777 == 0o600
        f2.start()
        _, vms = f2.json("GET", "/v1/vms", expect=200)  # f1's token works on f2
        have = {v["id"] for v in vms["vms"]}
        assert set(before) <= have, set(before) - have
        assert not set(after) & have  # taken after the snapshot: not in it
        assert "intact" in f2.ctl("audit", "verify").stdout
        # the same controller key: the pins it signs are the ones the nodes already trust
        with open(os.path.join(f1.state_dir, "pin.pub")) as a, \
                open(os.path.join(f2.state_dir, "pin.pub")) as b:
            assert a.read() == b.read()
        # the backup is recorded after its snapshot, so in f1's record only
        assert f2.audit("fleetd.backup") == []
        assert leftovers(f2) == []
    finally:
        stop.set()
        f1.close()
        if f2:
            f2.close()


def test_backup_needs_a_token():
    with H.Fleetd(nodes=1) as f:
        st, h, body = f.request("GET", "/v1/backup", token="")
        assert st == 401
        r = f.ctl("backup", os.path.join(f.dir, "x"), token=False, check=False)
        assert r.returncode == 1 and not os.path.exists(os.path.join(f.dir, "x"))


def test_damaged_or_foreign_backups_are_refused_and_change_nothing():
    f1 = H.Fleetd(nodes=2)
    try:
        f1.start()
        plain = os.path.join(f1.dir, "plain.backup")
        sealed = os.path.join(f1.dir, "sealed.backup")
        good_pass = passphrase_file(f1)
        assert "keep it as secret" in f1.ctl("backup", plain).stdout
        f1.ctl("backup", sealed, "--passphrase-file", good_pass)
        # a backup never overwrites
        r = f1.ctl("backup", plain, check=False)
        assert r.returncode == 1 and "never overwrites" in r.stderr
        data = open(plain, "rb").read()
        sdata = open(sealed, "rb").read()

        def variant(name, content):
            path = os.path.join(f1.dir, name)
            with open(path, "wb") as fp:
                fp.write(content)
            return path

        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        sflipped = bytearray(sdata)
        sflipped[len(sdata) // 2] ^= 0x40
        cases = [
            ([variant("cut", data[:len(data) // 2])], "checksum does not match"),
            ([variant("flip", bytes(flipped))], "checksum does not match"),
            ([variant("empty", b"")], "not a fleetd backup"),
            ([sealed, "--passphrase-file", passphrase_file(f1, "wrong passphrase!")],
             "wrong passphrase"),
            ([sealed], "give --passphrase-file"),
            ([variant("scut", sdata[:len(sdata) - 100]), "--passphrase-file", good_pass],
             "cut short"),
            ([variant("sflip", bytes(sflipped)), "--passphrase-file", good_pass],
             "wrong passphrase, or the file is damaged"),
        ]
        other = os.path.join(f1.dir, "other-roster.json")
        doc = H.roster_doc(2)
        doc["fleet_id"] = "other"
        with open(other, "w") as fp:
            import json
            json.dump(doc, fp)
        cases.append(([plain, "--roster", other], "names fleet 'other'"))
        for args, why in cases:
            f2 = H.Fleetd(nodes=2, auth=False)
            try:
                r = f2.ctl("restore", *args, check=False)
                assert r.returncode == 1, (args, r.stdout, r.stderr)
                assert why in r.stderr, (args, r.stderr)
                assert not os.path.exists(f2.state_dir), args
                assert leftovers(f2) == [], args
            finally:
                f2.close()
        # a state directory that holds anything is never restored over
        f2 = H.Fleetd(nodes=2)  # its token create made a store
        try:
            before = sorted(os.listdir(f2.state_dir))
            r = f2.ctl("restore", plain, check=False)
            assert r.returncode == 1 and "not empty" in r.stderr
            assert sorted(os.listdir(f2.state_dir)) == before
        finally:
            f2.close()
        # and the good one still restores
        f2 = H.Fleetd(nodes=2, auth=False)
        try:
            f2.ctl("restore", plain)
            f2.start()
        finally:
            f2.close()
    finally:
        f1.close()


def test_newer_schema_or_other_fleet_keeps_fleetd_from_starting():
    f = H.Fleetd(nodes=1)
    try:
        f.start()
        f.stop()
        db = os.path.join(f.state_dir, "fleetd.db")
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA user_version").fetchone()[0] == 3
        assert con.execute("SELECT value FROM meta WHERE key='fleet_id'").fetchone()[0] == "f1"
        con.execute("PRAGMA user_version = 4")
        con.commit()
        con.close()
        try:
            f.start()
            raise AssertionError("fleetd started on a newer schema")
        except RuntimeError as e:
            assert "schema version 4, newer than this fleetd" in str(e), str(e)[-2000:]
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA user_version").fetchone()[0] == 4  # untouched
        con.execute("PRAGMA user_version = 3")
        con.commit()
        con.close()
        doc = H.roster_doc(1)
        doc["fleet_id"] = "another"
        f.write_roster(doc)
        try:
            f.start()
            raise AssertionError("fleetd started on another fleet's state")
        except RuntimeError as e:
            assert "belongs to fleet 'f1' but the roster names fleet 'another'" in str(e)
    finally:
        f.close()
