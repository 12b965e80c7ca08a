# ctest-labels: slow fresh
# ctest-timeout: 4800
"""The README's two commands on a fresh Debian 12 (tests/fresh/fresh-root.sh): a minimal root
made by mmdebstrap (minbase, ca-certificates, git, iproute2; no sudo), the repository's committed
HEAD cloned into it, entered with pivot_root in new mount and PID namespaces, and there
`scripts/demo.sh --duration 20` then `scripts/test.sh`, exactly as written. Only .deb downloads
are cached between runs (/var/cache/totebox-fresh); nothing of the host's installed software
goes in. Inside such a root this module skips: the outer run made it.

TOTEBOX_FRESH_SOURCE names another repository to clone (default: the source tree under test)."""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

SOURCE = os.environ.get("TOTEBOX_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "tests", "fresh", "fresh-root.sh")


def failed_output(log, limit=40000):
    """What ctest printed for each failed test (--output-on-failure: the lines after its
    '***Failed' line up to the next test's start), the start of each kept: the log's end alone
    cut a failure's message off behind the page text it carried."""
    blocks = re.findall(r"^.*Test +#\d+: \S+ \.*\*\*\*(?:Failed|Timeout|Exception).*$"
                        r"(?:\n(?! *Start +\d+:).*)*", log, re.M)
    return "\n".join(b[:limit] for b in blocks) or "(no failed test's output found)"


def test_readme_commands_on_a_fresh_debian_root():
    if os.path.exists("/etc/totebox-fresh-root"):
        pytest.skip("by design: inside a fresh root made by tests/fresh/fresh-root.sh: the outer run "
                    "makes the roots")
    work = tempfile.mkdtemp(prefix="totebox-fresh-", dir="/var/tmp")
    start = time.monotonic()
    try:
        r = subprocess.run(["bash", SCRIPT, "--source",
                            os.environ.get("TOTEBOX_FRESH_SOURCE", SOURCE), "--work", work,
                            "--duration", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=4700)
        print(r.stdout)
        demo = open(os.path.join(work, "demo.log")).read()
        tests = open(os.path.join(work, "test.log")).read()
        print("fresh root: %.0f s in all" % (time.monotonic() - start))
        assert r.returncode != 3, "scripts/demo.sh failed in the fresh root:\n" + demo[-6000:]
        assert r.returncode == 0, ("scripts/test.sh failed in the fresh root:\n" + failed_output(tests)
                                   + "\n--- the log's end ---\n" + tests[-12000:])
        # The demo reached its end: a Totebox VM whose agent reported, then a clean teardown.
        assert "agent's first report after" in demo and "torn down" in demo, demo[-4000:]
        # Every test ran and passed (the sanitizer pass and the full pass), none failed.
        passed = re.findall(r"100% tests passed, 0 tests failed out of (\d+)", tests)
        assert len(passed) == 2 and int(passed[1]) > 50, tests[-6000:]
        assert "test.sh: finished in" in tests
    finally:
        subprocess.run(["chattr", "-R", "-i", "-a", work], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
