# ctest-labels: slow packages rig
# ctest-timeout: 1500
"""The real-host rig (tests/integration/rig.py): three booted Debian 12 machines on this one, each
systemd as PID 1 in its own namespaces, on an overlay of one base root; laptop-a and laptop-b in
an office LAN behind a NAT router with no port forward, the cloud node on an "internet" segment
with its own address, a home LAN behind a second NAT. Each machine installs the packages built
from this tree with apt (a local repository inside the rig; Debian's packages come with it from
the mirror's lists and archives fetched while the base was made), then its operator runs the
provision scripts as docs/operations.md writes them, in a login shell entered with nsenter. The
machines are shared by the cases, in order; each case leaves the fleet working for the next.

The ceremony's direction: the genesis (laptop-a) sits behind NAT with no inbound port, so for
the cloud node it dials out (--genesis --pair-connect cloud) to the cloud's join, which waits
(--join CODE --pair-listen 0.0.0.0); laptop-b in the same office joins the usual way, to the
genesis' pairing server on the LAN. Names come from /etc/hosts, as DNS would give them."""
import json
import os
import re
import shutil
import threading
import time

import pytest

import rig
from rig import MACHINES, Rig, wait

HB = 2  # the heartbeat interval the operators choose (--heartbeat-interval 2s)
KEEPALIVE = 25  # common/mesh.h MESH_KEEPALIVE_S
HOSTS = "10.1.0.10 laptop-a.office\n10.1.0.11 laptop-b.office\n203.0.113.10 cloud.example\n"


def ceremony(r, genesis_cmd, join_node, join_cmd):
    """The genesis operator opens a ceremony and reads out the code; the joiner's operator
    types it into the join; each types the SAS the other machine shows."""
    g = r.popen("laptop-a", genesis_cmd)
    code = g.read_until(r"pairing code: (\S+)").group(1)
    j = r.popen(join_node, join_cmd.replace("CODE", code))
    sas_g = g.read_until(r"SAS: (\d{3} \d{3})").group(1)
    sas_j = j.read_until(r"SAS: (\d{3} \d{3})").group(1)
    assert sas_g == sas_j, (sas_g, sas_j)
    j.type(sas_g)
    g.type(sas_j)
    rc_j, out_j = j.wait()
    rc_g, out_g = g.wait()
    assert rc_j == 0 and rc_g == 0, out_j + "\n--- genesis:\n" + out_g
    return out_g, out_j


def install(r):
    """Each operator: apt-get install the role's packages (in parallel, as three people would)."""
    outs, threads = {}, []

    def one(name):
        pkgs = rig.CLOUD_PACKAGES if name == "cloud" else rig.NODE_PACKAGES
        outs[name] = r.sh(name, "apt-get install -y -q --no-install-recommends " + pkgs,
                          check=False, timeout=900)
    for name in MACHINES:
        t = threading.Thread(target=one, args=(name,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for name, res in outs.items():
        assert res.returncode == 0, (name, res.stdout[-3000:], res.stderr[-3000:])


def nodes(r):
    out = r.sh("cloud", "fleetctl --json nodes", check=False)
    if out.returncode != 0:
        return {}
    return {n["id"]: n for n in json.loads(out.stdout)["nodes"]}


def all_alive(r, n=3):
    ns = nodes(r)
    return ns if len(ns) == n and all(v["state"] == "alive" for v in ns.values()) else None


def ping(r, src, dst_mesh, count=3):
    return r.sh(src, "ping -c %d -W 2 -i 0.3 %s" % (count, dst_mesh), check=False).returncode == 0


@pytest.fixture(scope="module")
def fleet():
    for tool in ("mmdebstrap", "dpkg-buildpackage", "dpkg-scanpackages", "nsenter", "unshare",
                 "iptables"):
        if not shutil.which(tool):
            pytest.skip("%s not installed (scripts/install-deps.sh)" % tool)
    if os.path.exists("/etc/totebox-fresh-root"):
        pytest.skip("by design: inside a fresh root: the outer run boots the rig")
    r = Rig()
    t_start = time.time()
    try:
        r.build_debs()
        r.make_base()
        r.net_up()
        for name in MACHINES:
            r.boot(name)
        t0 = time.time()
        install(r)
        r.phase("apt-get install on three machines", t0)
        for name in MACHINES:  # the operators' name service
            r.sh(name, "cat >> /etc/hosts", input=HOSTS)
        t0 = time.time()
        hb = "--heartbeat-interval %ds" % HB
        # The cloud first: it is the hub the laptops (no endpoint) reach each other through.
        r.out_cloud_genesis, r.out_cloud_join = ceremony(
            r, "provision-vm-infrastructure-onprem.sh --genesis --name laptop-a --no-install "
            "%s --pair-connect cloud.example" % hb,
            "cloud", "provision-vm-infrastructure-cloud.sh --join CODE --pair-listen 0.0.0.0 "
            "--name cloud --endpoint cloud.example:51820 --no-install %s" % hb)
        # The cloud's script printed the genesis' next step: name fleetd's pin key (step 2,
        # before laptop-b joins: laptop-b's join then brings it the roster that names it).
        key = re.search(r"controller-key (\S+)", r.out_cloud_join).group(1)
        r.out_key = r.sh("laptop-a", "totebox-pair controller-key %s" % key).stdout
        r.out_b_genesis, r.out_b_join = ceremony(
            r, "provision-vm-infrastructure-onprem.sh --genesis --name laptop-a --no-install %s"
            % hb, "laptop-b", "provision-vm-infrastructure-onprem.sh --join CODE "
            "--genesis-endpoint laptop-a.office --name laptop-b --no-install %s" % hb)
        r.phase("provision (two ceremonies, the pin key)", t0)
        r.sh("cloud", "fleetctl token create operator > /root/token.txt")
        tok = re.search(r"(tbx_[A-Za-z0-9_-]{43})", r.sh("cloud", "cat /root/token.txt").stdout)
        r.sh("cloud", "echo 'export FLEETCTL_TOKEN=%s' >> /root/.profile" % tok.group(1))
        r.mesh = {n: r.sh(n, "totebox-pair show --field mesh_address").stdout.strip()
                  for n in MACHINES}
        yield r
    finally:
        r.times["module so far"] = round(time.time() - t_start, 1)
        print("\nrig phases (s): %s" % json.dumps(r.times))
        r.down()


def test_a_office_laptops_and_cloud_join_mesh_up_heartbeats_three_alive(fleet):
    r = fleet
    # The genesis never took a connection: it dialled the cloud, and laptop-b joined over the LAN.
    assert "dialling the joiner at cloud.example" in r.out_cloud_genesis
    assert "waiting on 0.0.0.0:9173 for the genesis to connect" in r.out_cloud_join
    # Every member holds the roster that names fleetd's pin key (or it refuses the creations):
    # the genesis' push, or for a member it missed (its vmhost restarting, or busy past the
    # push's 3 s), fleetd's roster anti-entropy within a few heartbeats.
    assert "roster version" in r.out_key and "pin key" in r.out_key, r.out_key
    pin = r.sh("cloud", "cat /var/lib/totebox/fleetd/pin.pub").stdout.strip()
    for name in MACHINES:
        wait(lambda: r.sh(name, "totebox-pair show --field controller_pin_key").stdout.strip()
             == pin, 60, "%s to hold the roster naming fleetd's pin key" % name)
    for name in MACHINES:
        units = "totebox-mesh totebox-vmhost" + (" totebox-fleetd" if name == "cloud" else "")
        assert r.sh(name, "systemctl is-active %s" % units, check=False).stdout.split() == \
            ["active"] * len(units.split()), name
        assert r.sh(name, "systemctl is-active libvirtd").stdout.strip() == "active"
        assert r.sh(name, "systemctl is-enabled totebox-mesh totebox-vmhost").stdout.split() \
            == ["enabled", "enabled"]
    assert r.sh("laptop-a", "systemctl is-enabled totebox-fleetd", check=False).stdout.strip() \
        != "enabled"  # not installed on a laptop
    # The mesh: each laptop reaches the cloud directly, and the other laptop through the hub.
    assert r.sh("laptop-a", "totebox-pair show --field hub").stdout.strip() == "cloud"
    for a, b in (("laptop-a", "cloud"), ("laptop-b", "cloud"), ("laptop-a", "laptop-b"),
                 ("laptop-b", "laptop-a"), ("cloud", "laptop-a")):
        assert wait(lambda: ping(r, a, r.mesh[b]), 30, "%s to reach %s" % (a, b))
    peers = r.sh("laptop-a", "wg show wg0 allowed-ips").stdout
    assert len(peers.strip().splitlines()) == 1 and r.mesh["laptop-b"] + "/32" in peers
    # Heartbeats reach fleetd: three alive, recent, and counting.
    first = wait(lambda: all_alive(r), 60, "three alive nodes in fleetd")
    time.sleep(3 * HB)
    later = nodes(r)
    for n in MACHINES:
        assert later[n]["heartbeats"] > first[n]["heartbeats"], (n, first[n], later[n])
        assert later[n]["heartbeat_age_ms"] < 3 * HB * 1000, later[n]
    table = r.sh("cloud", "fleetctl nodes").stdout
    assert sorted(line.split()[0] for line in table.splitlines()[1:]) == sorted(MACHINES)
    assert all(line.split()[1] == "alive" for line in table.splitlines()[1:]), table


def heartbeats_resume(r, name, since, timeout):
    """Seconds until fleetd counts a heartbeat from name newer than `since` (a count)."""
    t0 = time.time()
    def resumed():
        n = nodes(r).get(name) or {}
        return (n.get("heartbeats") or 0) > since and n.get("state") == "alive"
    wait(resumed, timeout, "heartbeats from " + name, step=0.25)
    return time.time() - t0


def test_reboot_a_laptop_comes_back_with_mesh_heartbeats_and_fleetd_reconciled(fleet):
    r = fleet
    before = nodes(r)["laptop-b"]["heartbeats"]
    t0 = time.time()
    took = r.reboot("laptop-b")
    r.times["reboot laptop-b: running again"] = took
    # Back by itself: the units came up from their enabled state, no one ran a script.
    assert r.sh("laptop-b", "systemctl is-active totebox-mesh totebox-vmhost").stdout.split() \
        == ["active", "active"]
    # Counted from the moment the machine is up again: these come from the rebooted vmhost.
    booted = nodes(r)["laptop-b"]["heartbeats"]
    assert booted >= before
    heartbeats_resume(r, "laptop-b", booted, 60)
    r.times["reboot laptop-b: heartbeats again"] = round(time.time() - t0, 1)
    assert wait(lambda: ping(r, "laptop-a", r.mesh["laptop-b"]), 30, "laptop-a to laptop-b")
    # fleetd reconciles the node's inventory from its new heartbeats: all alive again.
    assert wait(lambda: all_alive(r), 30, "three alive nodes after the reboot")
    log = r.sh("laptop-b", "journalctl -b -u totebox-vmhost --no-pager", check=False).stdout
    assert "vmhost" in log


def test_c_laptop_changing_address_heals_within_one_keepalive(fleet):
    r = fleet
    before = nodes(r)["laptop-a"]["heartbeats"]
    t0 = time.time()
    r.readdress("laptop-a", "10.1.0.20")  # a new DHCP lease behind the same NAT
    heal = heartbeats_resume(r, "laptop-a", before + 1, KEEPALIVE + 5)
    r.times["address change: heartbeats again"] = round(time.time() - t0, 1)
    assert heal < KEEPALIVE, heal
    # And the other way: the cloud reaches the laptop at its new NAT mapping.
    assert wait(lambda: ping(r, "cloud", r.mesh["laptop-a"], 1), KEEPALIVE, "cloud to laptop-a")
    assert time.time() - t0 < KEEPALIVE + 5


def test_b_laptop_moved_home_goes_through_the_hub_forward_drop_and_reboot(fleet):
    r = fleet
    # The cloud's operator runs a firewall that drops forwarded traffic (loaded at every boot).
    r.sh("cloud", "cat > /etc/systemd/system/firewall.service && systemctl daemon-reload && "
         "systemctl enable --now firewall.service", input="""[Unit]
Description=The operator's firewall: nothing is forwarded unless a rule says so
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/iptables -P FORWARD DROP
[Install]
WantedBy=multi-user.target
""")
    # The hub's own rule is not in the firewall's way: re-apply the roster's state (refresh).
    r.sh("cloud", "provision-vm-infrastructure-cloud.sh --refresh --no-install")
    before = wait(lambda: all_alive(r), 60, "three alive after fleetd restarted")["laptop-b"][
        "heartbeats"]
    r.move("laptop-b", "home", "10.2.0.11", "10.2.0.1")
    heartbeats_resume(r, "laptop-b", before + 1, KEEPALIVE + 10)
    # laptop-b at home and laptop-a in the office: no direct path, both behind NAT; the hub.
    for a, b in (("laptop-a", "laptop-b"), ("laptop-b", "laptop-a")):
        assert wait(lambda: ping(r, a, r.mesh[b]), 40, "%s to reach %s via the hub" % (a, b))
    fwd = r.sh("cloud", "iptables -S FORWARD").stdout
    assert "-P FORWARD DROP" in fwd and "-A FORWARD -i wg0 -o wg0 -j ACCEPT" in fwd, fwd
    # Forwarding survives the hub's reboot: sysctl.d and the mesh unit's drop-in, no script.
    r.times["reboot cloud (the hub)"] = r.reboot("cloud")
    assert r.sh("cloud", "sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    fwd = r.sh("cloud", "iptables -S FORWARD").stdout
    assert "-P FORWARD DROP" in fwd and "-A FORWARD -i wg0 -o wg0 -j ACCEPT" in fwd, fwd
    assert r.sh("cloud", "systemctl is-active totebox-mesh totebox-vmhost totebox-fleetd") \
        .stdout.split() == ["active"] * 3
    for a, b in (("laptop-a", "laptop-b"), ("laptop-b", "laptop-a")):
        assert wait(lambda: ping(r, a, r.mesh[b]), 60, "%s to %s after the hub rebooted" % (a, b))
    assert wait(lambda: all_alive(r), 60, "three alive nodes after the hub rebooted")


def test_d_cloud_joined_a_genesis_behind_nat_with_no_inbound_port(fleet):
    r = fleet
    # No port forward on the office router, and no way in from the internet to the genesis.
    nat = r.in_ns(r.ns("office"), "iptables", "-t", "nat", "-S").stdout
    assert "DNAT" not in nat and "REDIRECT" not in nat, nat
    probe = r.sh("cloud", "timeout 3 bash -c 'exec 3<>/dev/tcp/203.0.113.1/9173'", check=False)
    assert probe.returncode != 0
    probe = r.sh("cloud", "timeout 3 bash -c 'exec 3<>/dev/tcp/10.1.0.10/9173'", check=False)
    assert probe.returncode != 0
    # Yet the cloud is in the roster with its endpoint, and it is the controller.
    show = r.sh("laptop-a", "totebox-pair show").stdout
    assert "controller=cloud" in show and "hub=cloud" in show, show
    assert "joined: node 'cloud' role cloud" in r.out_cloud_genesis


def test_e_endpoints_as_hostnames(fleet):
    """Host names, resolved by the system's resolver (/etc/hosts here, as DNS would): the
    genesis dialled the cloud by name, laptop-b joined the genesis by name, and the cloud's
    WireGuard endpoint in the roster is a name. The laptops have no endpoint, so every session
    with the cloud was started by a laptop, towards the address that name resolved to. IPv6
    literals are not supported: endpoints are IPv4 (common/wg.h; wg_endpoint_resolve refuses
    "[2001:db8::1]:51820", tests/unit/test_wg_uapi.c)."""
    r = fleet
    assert "dialling the joiner at cloud.example" in r.out_cloud_genesis
    assert "joined: fleet" in r.out_b_join
    assert r.sh("cloud", "totebox-pair show --field endpoint").stdout.strip() == \
        "cloud.example:51820"
    roster = json.loads(r.sh("laptop-a", "cat /var/lib/totebox/mesh/roster.json").stdout)
    cloud = [n for n in roster["nodes"] if n["id"] == "cloud"][0]
    assert cloud["endpoint"] == "cloud.example:51820", cloud
    for laptop in ("laptop-a", "laptop-b"):
        eps = r.sh(laptop, "wg show wg0 endpoints").stdout
        assert "203.0.113.10:51820" in eps, (laptop, eps)




# --- backup and restore, as docs/operations.md ("Backup, restore and upgrade") writes them ---

CTL_PASS = "a long passphrase for the controller backups"
GENESIS_PASS = "a long passphrase you will not forget"
PLAN = "--memory 128 --vcpus 1 --image tiny --disk 16"
STATE = {}


def carry(r, src, path, dst, dst_path):
    """The operator carries a file from one machine to another (a USB stick): its bytes as they
    are, into a file only root reads."""
    data = r.sh(src, "base64 -w0 " + path).stdout
    r.sh(dst, "umask 077; mkdir -p \"$(dirname %s)\" && base64 -d > %s" % (dst_path, dst_path),
         input=data)


def on_laptop(r, script, check=True):
    """A command on laptop-a with fleetctl pointed at the controller over the mesh."""
    env = "export FLEETCTL_URL=http://%s:9170 FLEETCTL_TOKEN=%s; " % (r.mesh["cloud"], r.token)
    return r.sh("laptop-a", env + script, check=check)


def vms(r):
    return {v["id"]: v for v in json.loads(r.sh("cloud", "fleetctl --json vms").stdout)["vms"]}


def guest_runs(r, node, vm):
    """vm is active at fleetd, and its domain runs under node's libvirtd (qemu:///system), QEMU
    as libvirt-qemu (libvirt's DAC driver: vmhost's directories are 0711, its files 0600)."""
    v = wait(lambda: (lambda v: v if v["status"] != "creating" else None)(vms(r)[vm]), 120,
             "the creation of %s" % vm)
    assert v["status"] == "active" and v["node_id"] == node, v
    state = r.sh(node, "virsh -c qemu:///system domstate " + vm, check=False).stdout.strip()
    assert state == "running", state
    users = r.sh(node, "ps -o user= -C qemu-system-x86_64").stdout.split()
    assert users and set(users) == {"libvirt-qemu"}, users


def fleetd_counter(r, name):
    """A counter of fleetd's /metrics, read on the controller (a rig machine has no curl)."""
    out = r.sh("cloud", "exec 3<>/dev/tcp/127.0.0.1/9170 && printf 'GET /metrics HTTP/1.0\\r\\n"
               "Authorization: Bearer %s\\r\\n\\r\\n' \"$FLEETCTL_TOKEN\" >&3 && cat <&3").stdout
    m = re.search(r"^%s (\d+)$" % re.escape(name), out, re.M)
    return int(m.group(1)) if m else 0


def test_f_controller_backed_up_from_a_laptop_over_the_mesh(fleet):
    """What fleetd alone knows goes into the backup: tokens, a confirmed VM, an open plan, the
    audit record. The confirmed VM runs on laptop-b under its libvirtd (qemu:///system), its QEMU
    as libvirt-qemu; its disk is a blank qcow2, so no OS boots, which the backup does not need."""
    r = fleet
    t0 = time.time()
    r.token = re.search(r"(tbx_[A-Za-z0-9_-]{43})",
                        r.sh("cloud", "cat /root/token.txt").stdout).group(1)
    r.sh("laptop-a", "apt-get install -y -q --no-install-recommends totebox-cli")
    on_laptop(r, "qemu-img create -q -f qcow2 tiny.qcow2 32M && "
                 "fleetctl image push tiny.qcow2 --name tiny")
    out = on_laptop(r, "fleetctl plan --entity acme %s --node laptop-b --yes" % PLAN, check=False)
    vm = re.search(r"VM '(tbx-acme-[0-9a-f]+)' recorded", out.stdout).group(1)
    guest_runs(r, "laptop-b", vm)
    STATE["vm"] = vm
    STATE["plan"] = json.loads(on_laptop(r, "fleetctl --json plan --entity later %s" % PLAN)
                               .stdout)["id"]
    r.sh("cloud", "fleetctl token create auditor")
    r.sh("laptop-a", "umask 077; printf '%s\\n' '" + CTL_PASS + "' > ~/.totebox-backup-pass")
    t1 = time.time()
    out = on_laptop(r, "fleetctl backup fleet-$(date +%F).backup --passphrase-file "
                       "~/.totebox-backup-pass").stdout
    r.times["fleetctl backup over the mesh"] = round(time.time() - t1, 1)
    m = re.search(r"backup of fleet '(\S+)' \(schema \d+, (\d+) audit entries, \d+ files\) "
                  r"written to '(fleet-[0-9-]+\.backup)', sealed with the passphrase", out)
    assert m, out
    assert m.group(1) == r.sh("laptop-a", "totebox-pair show --field fleet_id").stdout.strip()
    STATE["entries"], STATE["backup"] = int(m.group(2)), m.group(3)
    assert r.sh("laptop-a", "stat -c %a " + STATE["backup"]).stdout.strip() == "600"
    r.times["case f: controller backup"] = round(time.time() - t0, 1)


def test_g_controller_restored_from_the_backup_on_an_empty_state_directory(fleet):
    """The controller's state is lost (its directory moved away, as a new disk would be) and the
    backup carried from the laptop is restored as the document writes it; then the old token
    works, the audit record verifies, the nodes' heartbeats reach the restored fleetd, and the
    VM and the plan made before the backup are there: the plan is confirmed now."""
    r = fleet
    t0 = time.time()
    backup = STATE["backup"]
    carry(r, "laptop-a", backup, "cloud", "/root/" + backup)
    carry(r, "laptop-a", ".totebox-backup-pass", "cloud", "/root/.totebox-backup-pass")
    restore = ("fleetctl restore %s --passphrase-file ~/.totebox-backup-pass "
               "--state-dir /var/lib/totebox/fleetd --roster /var/lib/totebox/mesh/roster.json"
               % backup)
    # Refused while the old state is there: a restore goes only into an empty directory.
    out = r.sh("cloud", restore, check=False)
    assert out.returncode != 0 and "is not empty" in out.stderr, out.stderr
    r.sh("cloud", "systemctl stop totebox-fleetd && "
                  "mv /var/lib/totebox/fleetd /var/lib/totebox/fleetd.lost")
    out = r.sh("cloud", "systemctl stop totebox-fleetd\n" + restore + "\n"
               "chown -R totebox-fleetd: /var/lib/totebox/fleetd\n"
               "systemctl start totebox-fleetd\n"
               "fleetctl audit verify").stdout
    assert "restored fleet '" in out and "%d audit entries verified" % STATE["entries"] in out, \
        out
    assert "audit record intact" in out, out
    # The old token (the operator's, in root's profile) works, on the controller and the laptop.
    first = wait(lambda: all_alive(r), 30, "three alive nodes in the restored fleetd")
    for n in MACHINES:  # the cloud's own vmhost counts more slowly than the laptops': wait
        heartbeats_resume(r, n, first[n]["heartbeats"], 30)
    assert on_laptop(r, "fleetctl nodes").returncode == 0
    tokens = r.sh("cloud", "fleetctl token list").stdout
    assert "operator" in tokens and "auditor" in tokens, tokens
    assert vms(r)[STATE["vm"]]["node_id"] == "laptop-b"
    plans = r.sh("cloud", "fleetctl plan list state=open").stdout
    assert STATE["plan"] in plans, plans
    # The restored fleetd signs with the same pin key: the node takes its creation's pin.
    out = on_laptop(r, "fleetctl confirm " + STATE["plan"], check=False)
    vm = re.search(r"VM '(tbx-later-[0-9a-f]+)' recorded", out.stdout).group(1)
    guest_runs(r, vms(r)[vm]["node_id"], vm)
    r.times["case g: controller restore"] = round(time.time() - t0, 1)


def test_h_genesis_key_backed_up_on_laptop_a_and_restored_on_laptop_b(fleet):
    r = fleet
    t0 = time.time()
    out = r.sh("laptop-a", "umask 077; printf '%s\\n' '" + GENESIS_PASS + "' > /root/genesis-pass"
               "\ntotebox-pair backup-genesis-key /root/fleet-genesis.key.backup "
               "--passphrase-file /root/genesis-pass\nshred -u /root/genesis-pass").stdout
    assert "sealed into '/root/fleet-genesis.key.backup'" in out, out
    head = r.sh("laptop-a", "head -7 /root/fleet-genesis.key.backup").stdout
    fleet_id = r.sh("laptop-a", "totebox-pair show --field fleet_id").stdout.strip()
    pub = r.sh("laptop-a", "cat /var/lib/totebox/mesh/genesis.pub").stdout.strip()
    assert "fleet_id=%s\n" % fleet_id in head and "genesis_public_key=%s\n" % pub in head, head
    assert r.sh("laptop-a", "stat -c %a /root/fleet-genesis.key.backup").stdout.strip() == "600"
    carry(r, "laptop-a", "/root/fleet-genesis.key.backup", "laptop-b",
          "/media/usb/fleet-genesis.key.backup")
    restore = ("totebox-pair restore-genesis-key /media/usb/fleet-genesis.key.backup "
               "--passphrase-file /root/genesis-pass")
    before = r.sh("laptop-b", "ls /var/lib/totebox/mesh").stdout
    out = r.sh("laptop-b", "umask 077; printf '%s\\n' 'not the passphrase at all' > "
               "/root/genesis-pass\n" + restore, check=False)
    assert out.returncode != 0 and "wrong passphrase, or the file was altered" in out.stderr, \
        out.stderr
    assert r.sh("laptop-b", "ls /var/lib/totebox/mesh").stdout == before  # nothing written
    out = r.sh("laptop-b", "umask 077; printf '%s\\n' '" + GENESIS_PASS + "' > "
               "/root/genesis-pass\n" + restore).stdout
    assert "restored on 'laptop-b'" in out and "made on 'laptop-a'" in out, out
    assert r.sh("laptop-b", "stat -c %a /var/lib/totebox/mesh/genesis.key").stdout.strip() == \
        "600"
    r.times["case h: genesis key backup and restore"] = round(time.time() - t0, 1)


def test_i_laptop_b_removes_the_lost_genesis_from_every_peer(fleet):
    """laptop-a is lost (stolen: it runs on, in other hands); laptop-b, which holds the genesis
    key now, removes it. Its key leaves every remaining peer by the time the command returns,
    fleetd no longer lists it, and its heartbeats, routed around the mesh in clear by the thief
    (from its old mesh address, through the office router), are refused as revoked."""
    r = fleet
    t0 = time.time()
    key = r.sh("laptop-a", "wg show wg0 public-key").stdout.strip()
    assert key in r.sh("cloud", "wg show wg0 peers").stdout
    out = r.sh("laptop-b", "totebox-pair remove-node cloud", check=False)
    assert out.returncode != 0 and "runs the fleet controller" in out.stderr, out.stderr
    version = int(r.sh("laptop-b", "totebox-pair show --field roster_version").stdout)
    t1 = time.time()
    out = r.sh("laptop-b", "totebox-pair remove-node laptop-a\nshred -u /root/genesis-pass").stdout
    r.times["remove-node"] = round(time.time() - t1, 1)
    assert "roster version %d removes node 'laptop-a' (%s)" % (version + 1, r.mesh["laptop-a"]) \
        in out, out
    for n in ("cloud", "laptop-b"):
        assert "roster version %d pushed to '%s'" % (version + 1, n) in out, out
    # Gone from every remaining peer when the command returns (the push is synchronous), well
    # within one heartbeat interval.
    t1 = time.time()
    assert key not in r.sh("cloud", "wg show wg0 peers").stdout
    assert r.mesh["laptop-a"] + "/32" not in r.sh("laptop-b", "wg show wg0 allowed-ips").stdout
    assert time.time() - t1 < HB
    assert not ping(r, "laptop-a", r.mesh["cloud"], 1)
    wait(lambda: "laptop-a" not in nodes(r), 5 * HB, "fleetd to drop laptop-a", step=0.25)
    assert vms(r)[STATE["vm"]]["node_id"] == "laptop-b"
    # The thief routes laptop-a's heartbeats to the controller in clear, from its mesh address.
    before = fleetd_counter(r, 'totebox_fleetd_heartbeats_dropped_total{reason="revoked"}')
    office = r.ns("office")
    rig.run(["ip", "-n", office, "route", "add", r.mesh["cloud"] + "/32", "via",
         MACHINES["cloud"][1]])
    r.in_ns(office, "iptables", "-t", "nat", "-I", "POSTROUTING", "-s", r.mesh["laptop-a"],
            "-j", "RETURN")
    r.sh("laptop-a", "ip route add %s/32 via %s src %s" % (
        r.mesh["cloud"], MACHINES["laptop-a"][2], r.mesh["laptop-a"]))
    wait(lambda: fleetd_counter(
        r, 'totebox_fleetd_heartbeats_dropped_total{reason="revoked"}') >= before + 2,
        4 * HB, "fleetd to refuse laptop-a's heartbeats as revoked")
    assert "laptop-a" not in nodes(r)
    assert wait(lambda: all_alive(r, 2), 30, "cloud and laptop-b alive")
    r.times["case i: remove-node"] = round(time.time() - t0, 1)
