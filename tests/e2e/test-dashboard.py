#!/usr/bin/python3
"""`laurel dashboard` in a real browser: two redis-server shards, the echo example in one
laurel-interface (with --metrics) and one laurel-worker (with --metrics when the worker has it),
and the dashboard reading the layer and scraping them (and one address where nothing listens,
which must show as down). dashboard.mjs (node + playwright-core driving Debian's
/usr/bin/chromium) loads the page, puts a known load through the deployment (HTTP requests,
WebSocket messages, a backlog and a full channel made with the laurel tool), checks that the
charts move and that what the page shows adds up to what was sent, takes the screenshot
(docs/dashboard.png, or $LAUREL_SCREENSHOT) while under load, then kills one Redis shard and
checks that it shows red within a few seconds.

Usage: test-dashboard.py BUILD_DIR [SCREENSHOT]"""
import os
import subprocess
import sys

from harness import Stack, check, done, free_port, wait_port, http, run_node

HERE = os.path.dirname(os.path.abspath(__file__))


class TwoShards(Stack):
    """The harness's stack on a layer of two shards: the second redis-server starts right after
    the first, and every process is given both."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.redis2_port = free_port()
        self.layer = "redis://127.0.0.1:%d,redis://127.0.0.1:%d" % (self.redis_port,
                                                                     self.redis2_port)

    def _start(self, name, argv):
        p = super()._start(name, argv)
        if name == "redis":
            self.redis2 = super()._start("redis2", [
                "redis-server", "--port", str(self.redis2_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir])
            if not wait_port(self.redis2_port):
                raise RuntimeError("the second redis-server did not start")
        return p

    def wait_workers(self, timeout=10.0):
        # Workers block on both shards; the surest sign that the echo app answers is an answer.
        for _ in range(int(timeout / 0.1)):
            if http("GET", self.base + "/hello")[0] == 200:
                return
        raise RuntimeError("the echo application does not answer:\n" + self.logs())


def main(st, mport, wport, worker_up, shot):
    missing = [what for what, ok in [
        ("/usr/bin/chromium (apt-get install chromium)", os.access("/usr/bin/chromium", os.X_OK)),
        ("node (apt-get install nodejs)", subprocess.run(["which", "node"],
                                                         capture_output=True).returncode == 0),
        ("playwright-core (scripts/deps)",
         os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")))] if not ok]
    if missing:
        check(False, "browser test prerequisites", "missing " + ", ".join(missing))
        return
    dport = free_port()
    tool = os.path.join(st.build, "tool", "laurel")
    scrape = ["--scrape", "http://127.0.0.1:%d/metrics" % mport]
    scrape += ["--scrape", "http://127.0.0.1:%d/metrics" % wport]
    st._start("dashboard", [tool, "dashboard", "--listen", "127.0.0.1:%d" % dport, "--layer",
                            st.layer] + scrape)
    check(wait_port(dport), "the dashboard listens")
    run_node(os.path.join(HERE, "dashboard.mjs"),
             ["http://127.0.0.1:%d" % dport, st.base, st.ws_base, tool, st.layer, st.redis2.pid,
              "1" if worker_up else "0", shot], 70, HERE)
    # Killed on purpose: not a crash for the harness to report.
    if st.redis2.wait(timeout=5) == -9:
        st.procs.remove(st.redis2)


if __name__ == "__main__":
    os.environ.pop("LAUREL_E2E_MODE", None)
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    shot = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "LAUREL_SCREENSHOT", "/tmp/dashboard.png"))
    mport, wport = free_port(), free_port()
    # A worker pool's endpoint when laurel-worker has --metrics; else the address stays
    # empty, and the dashboard must show it as down.
    worker_help = subprocess.run([os.path.join(build, "worker", "laurel-worker"), "--help"],
                                 capture_output=True, text=True).stdout
    worker_opts = ["--metrics", "127.0.0.1:%d" % wport] if "--metrics" in worker_help else []
    st = TwoShards([("echo", worker_opts)], workers=1, timeout=85)
    st.interface_args = ["--metrics", "127.0.0.1:%d" % mport, "--no-http-disconnect"]
    with st:
        main(st, mport, wport if worker_opts else free_port(), bool(worker_opts), shot)
    sys.exit(done())
