"""Under scripts/test.sh (TOTEBOX_STRICT_SKIPS=1) a skipped test is a failed test: there, every
tool a test needs was installed by scripts/install-deps.sh, so a skip can only mean a missing
install step (or a broken build) that the run would otherwise hide. A skip that belongs to a
test's design (nested fresh roots, a measurement that means nothing under ASan) says so with a
reason that starts with "by design:". By hand (plain ctest or pytest) skips stay skips."""
import os

import pytest

DESIGNED = "by design:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("TOTEBOX_STRICT_SKIPS") != "1" or not rep.skipped:
        return
    if hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if reason.removeprefix("Skipped: ").startswith(DESIGNED):
        return
    rep.outcome = "failed"
    rep.longrepr = ("skipped under scripts/test.sh, where nothing may be: %s (install it from "
                    "scripts/packages/*.txt, or say 'by design:' if the skip is meant)" % reason)
