"""Black-box test harness: start the real daemons on private ports and directories.

The one home of the helpers every test module shares (ports, waiting, commands, schema
validation); test_fleetd_harness.py and test_vmhost_harness.py build the daemon fixtures on it.
Every daemon started here is ended by its PID when the test finishes (never by name).
"""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("TOTEBOX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


def free_port(kind=socket.SOCK_STREAM):
    """A port the kernel just handed out on loopback, for TCP or UDP."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One real daemon process with its log file; stop() ends it by PID."""

    def __init__(self, binary, args, workdir, name):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary] + args, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=workdir)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=None):
        if self.alive():
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def text(self):
        with open(self.log_path) as f:
            return f.read()


def http(method, url, body=None, headers=None, timeout=5):
    """Returns (status, headers, parsed JSON or raw text)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode(errors="replace")


def run(args, check=False, timeout=120, **kw):
    """Runs a command with its output captured as text; check=True raises on a non-zero exit."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout,
                          **kw)


def sh(*args, check=True, timeout=120, **kw):
    """run() with the command given as arguments, checked by default."""
    return run(args, check=check, timeout=timeout, **kw)


def wait_for(predicate, timeout=10.0, what="condition", interval=0.05):
    """Polls predicate until it returns something true and returns that, or fails the test."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def proc_status(pid):
    """/proc/PID/status as a dict (Uid, CapEff, NoNewPrivs, Seccomp ...)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def load_schema_registry():
    """All schemas under schemas/, keyed by file name, for jsonschema's RefResolver."""
    schemas = {}
    sdir = os.path.join(SOURCE, "schemas")
    for name in os.listdir(sdir):
        if name.endswith(".schema.json"):
            with open(os.path.join(sdir, name)) as f:
                schemas[name] = json.load(f)
    return schemas


def validate(instance, schema_name, fragment=None):
    """Validates against schemas/<schema_name> with Draft 2020-12 (Debian's python3-jsonschema)."""
    import jsonschema
    schemas = load_schema_registry()
    schema = schemas[schema_name]
    store = {}
    for name, s in schemas.items():
        store[s["$id"]] = s
        store[name] = s
    resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
    target = schema if fragment is None else {"$ref": schema["$id"] + "#" + fragment}
    jsonschema.Draft202012Validator(target, resolver=resolver,
                                    format_checker=jsonschema.FormatChecker()).validate(instance)


class Workdir:
    """A temporary directory that vmhost's unprivileged user can search (0755, in /tmp):
    vmhost started as root drops to its own user, which must reach its state directory."""
    def __init__(self, prefix="totebox-test-"):
        self.tmp = tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp")
        self.path = self.tmp.name
        os.chmod(self.path, 0o755)

    def write(self, name, text):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def cleanup(self):
        self.tmp.cleanup()
