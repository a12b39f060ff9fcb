"""The end-to-end tests' harness: a real redis-server, laurel-interface and laurel-worker processes
on free loopback ports, started and stopped by each test, and value-printing checks that end with
"N passed, N failed" (tests/lib/testlib.py's, handed on from here).

A test script is run as `test-x.py BUILD_DIR` (the meson build directory that holds
interface/laurel-interface, worker/laurel-worker, tool/laurel and examples/*/liblaurel-*.so), or
with LAUREL_BUILD set. With LAUREL_E2E_MODE=runserver the same tests run the application in the
development server instead (`laurel runserver --layer redis://...`: one process, worker threads,
on the same redis-server so that the tests can still look at the layer). Every test bounds its own run time (Stack.deadline) and stops everything
it started, also when it fails."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The checks and their counts are testlib's (tests/lib), shared by every suite's Python tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testlib  # noqa: E402
from testlib import check, check_eq, done, free_port, short, wait_port  # noqa: E402,F401


def build_dir():
    d = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LAUREL_BUILD", "build")
    return os.path.abspath(d)


class Stack:
    """redis-server, `interfaces` laurel-interface and, for each example app, `workers`
    laurel-worker programs running it. apps is a name (or the path of a .so) or a list of names
    or (name, [worker options]) pairs: apps that share a layer must not listen on each other's channels (every
    worker also listens on websocket.* for the default routes: --only-channels narrows it). The examples' SQLite database is LAUREL_EXAMPLE_DB = self.db, in the
    stack's own temporary directory."""

    def __init__(self, apps, workers=2, interfaces=1, timeout=55):
        self.build = build_dir()
        self.apps = []
        for a in [apps] if isinstance(apps, str) else apps:
            name, opts = (a, []) if isinstance(a, str) else a
            path = name if name.endswith(".so") else os.path.join(
                self.build, "examples", name, "lib%s.so" % name)
            self.apps.append([path] + list(opts))
        self.dir = tempfile.mkdtemp(prefix="laurel-e2e-")
        self.db = os.path.join(self.dir, "example.sqlite3")
        self.env = dict(os.environ, LAUREL_EXAMPLE_DB=self.db)
        self.procs = []
        self.interface_args = []  # more laurel-interface options, set before entering
        self.worker_args = []  # more laurel-worker options (applications' workers only)
        self.workers = workers * len(self.apps)
        self.redis_port = free_port()
        self.runserver = os.environ.get("LAUREL_E2E_MODE") == "runserver"
        if self.runserver:
            interfaces = 1
        self.ports = [free_port() for _ in range(interfaces)]
        self.port = self.ports[0]
        self.layer = "redis://127.0.0.1:%d" % self.redis_port
        self.base = "http://127.0.0.1:%d" % self.port
        self.ws_base = "ws://127.0.0.1:%d" % self.port
        # The other interfaces, for clients that should not share one.
        self.ws_bases = ["ws://127.0.0.1:%d" % p for p in self.ports]
        # The whole test is bounded: past the deadline SIGALRM stops it (and __exit__ cleans up).
        signal.signal(signal.SIGALRM, self._timeout)
        signal.alarm(timeout)

    @staticmethod
    def _timeout(signum, frame):
        raise TimeoutError("the test ran out of time")

    def _start(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                             cwd=self.dir, start_new_session=True)
        p.name = name
        self.procs.append(p)
        return p

    def tool(self, *args):
        """Runs the laurel tool on this stack's layer; returns (exit status, stdout)."""
        r = subprocess.run([os.path.join(self.build, "tool", "laurel"), "--layer", self.layer]
                           + list(args), capture_output=True, text=True, timeout=10)
        return r.returncode, r.stdout

    def __enter__(self):
        try:
            self._start("redis", ["redis-server", "--port", str(self.redis_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                  self.dir])
            if not wait_port(self.redis_port):
                raise RuntimeError("redis-server did not start")
            if self.runserver:
                if len(self.apps) != 1:
                    raise RuntimeError("runserver runs one application")
                self._start("runserver", [os.path.join(self.build, "tool", "laurel"),
                                          "runserver", "--app", self.apps[0][0], "-p",
                                          str(self.port), "--layer", self.layer, "--workers",
                                          "2"])
                if not wait_port(self.port):
                    raise RuntimeError("laurel runserver did not start:\n" + self.logs())
                return self
            for i in range(self.workers):
                app = self.apps[i % len(self.apps)]
                self._start("worker%d" % (i + 1),
                            [os.path.join(self.build, "worker", "laurel-worker"), "--app"] + app
                            + ["--layer", self.layer, "--processes", "1"] + self.worker_args)
            # The asgi.delay service, as deploy/ runs it.
            self._start("delay", [os.path.join(self.build, "worker", "laurel-worker"), "--delay",
                                  "--layer", self.layer, "--processes", "1"])
            for i, port in enumerate(self.ports):
                self._start("interface%d" % (i + 1),
                            [os.path.join(self.build, "interface", "laurel-interface"), "-b",
                             "127.0.0.1", "-p", str(port), "--layer", self.layer]
                            + self.interface_args)
                if not wait_port(port):
                    raise RuntimeError("laurel-interface did not start:\n" + self.logs())
            self.wait_workers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_workers(self, timeout=10.0):
        """Waits until every worker blocks on the layer (each has a Redis client in BLPOP)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "CLIENT", "LIST"],
                                 capture_output=True, text=True).stdout
            # + the interfaces' readers + the delay service
            if out.count("cmd=blpop") >= self.workers + len(self.ports) + 1:
                return
            time.sleep(0.05)
        raise RuntimeError("the workers did not start:\n" + self.logs())

    def logs(self):
        out = []
        for p in self.procs:
            path = os.path.join(self.dir, p.name + ".log")
            try:
                text = open(path, errors="replace").read()
            except OSError:
                continue
            if text.strip():
                out.append("--- %s (exit %s)\n%s" % (p.name, p.poll(), text[-3000:]))
        return "\n".join(out)

    def __exit__(self, et, ev, tb):
        signal.alarm(0)
        # The laurel processes first (they drain through Redis), then redis-server.
        for group in (self.procs[1:], self.procs[:1]):
            for p in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in group:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # Under sanitizers a report in any log fails the test.
        reports = [p.name for p in self.procs if any(
            m in open(os.path.join(self.dir, p.name + ".log"), errors="replace").read()
            for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"))]
        if reports:
            check(False, "no sanitizer report in the logs", reports)
        # A worker or interface that died on its own, or a failed test: show their logs.
        crashed = [p for p in self.procs if p.returncode not in (0, -signal.SIGTERM)]
        if et is not None or testlib.failed or crashed:
            print(self.logs(), flush=True)
        if et is not None:
            check(False, "test ran to the end", "%s: %s" % (et.__name__, ev))
        shutil.rmtree(self.dir, ignore_errors=True)
        return et is not None and issubclass(et, Exception)


def run_node(script, args, timeout, cwd):
    """Runs a Node script that prints one "ok ..." or "FAIL ..." line per check (the browser
    tests' .mjs files) and counts each line as a check here; other lines are printed. A
    non-zero exit status fails one more check."""
    r = subprocess.run(["node", script] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, cwd=cwd)
    for line in r.stdout.splitlines():
        if line.startswith("ok   "):
            check(True, line[5:])
        elif line.startswith("FAIL "):
            check(False, line[5:])
        else:
            print(line, flush=True)
    if r.returncode != 0:
        check(False, "%s exit status" % os.path.basename(script),
              (r.returncode, r.stderr[-2000:]))
    return r


def http(method, url, body=None, headers=None):
    """One HTTP request; returns (status, headers, body bytes) whatever the status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
