#!/usr/bin/python3
"""laurel-interface --metrics and laurel-worker --metrics against a real Prometheus (Debian's
`prometheus`, and `promtool`).

The echo example in one laurel-interface (with --metrics on a free port) and one laurel-worker
pool of 2 processes (with --metrics), on a redis-server of its own (tests/e2e/harness.py's
Stack); a Prometheus started here scrapes both every second. The test sends a known load — N GETs
answered 200, M GETs answered 404, K WebSocket messages echoed on one socket closed with 1000 —
and reads the values back from Prometheus' HTTP API: every counter of both moved by exactly what
was sent (the pool's by channel and by route, summed over its processes), and the histograms
counted every response and every consumer run. A worker process killed with SIGKILL is counted as
a restart, its counts are kept, and the pool is ready again; its metrics process killed is
replaced on the same listener. `promtool check metrics` accepts
both endpoints' output. /healthz answers; /readyz of both is 200, goes to 503 (with a JSON
reason) within 2 s of Redis being killed, and back to 200 once Redis is back. `laurel runserver --metrics` serves both sets, counted exactly. Ends with
"N passed, N failed"; about 30 s.

Usage: test-metrics.py BUILD_DIR"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e"))
os.environ.pop("LAUREL_E2E_MODE", None)

import websockets  # noqa: E402

from harness import Stack, check, check_eq, done, free_port, wait_port  # noqa: E402
from testlib import fetch, parse_exposition  # noqa: E402

N_OK, N_404, K_WS = 300, 40, 50


class Prometheus:
    def __init__(self, st, target, worker_target):
        self.port = free_port()
        self.dir = os.path.join(st.dir, "prometheus")
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: laurel-interface\n"
                    "    static_configs:\n      - targets: ['%s']\n"
                    "  - job_name: laurel-worker\n"
                    "    static_configs:\n      - targets: ['%s']\n" % (target, worker_target))
        self.proc = st._start("prometheus", [
            "prometheus", "--config.file=" + conf, "--storage.tsdb.path=" + self.dir + "/data",
            "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"])

    def query(self, q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port,
                                                       urllib.parse.urlencode({"query": q}))
        status, body = fetch(url)
        if status != 200:
            return None
        res = json.loads(body)["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def wait_for(self, q, want, timeout=20):
        end = time.monotonic() + timeout
        got = None
        while time.monotonic() < end:
            got = self.query(q)
            if got == want:
                return got
            time.sleep(0.25)
        return got


async def ws_echo(url, k):
    async with websockets.connect(url) as ws:
        for i in range(k):
            await ws.send("m%d" % i)
            await asyncio.wait_for(ws.recv(), 5)
        await ws.close(1000)


def pool_children(st):
    """The pids of the worker pool's worker processes (the supervisor's children but its
    metrics process)."""
    pool = next(p for p in st.procs if p.name == "worker1")
    with open("/proc/%d/task/%d/children" % (pool.pid, pool.pid)) as f:
        pids = [int(x) for x in f.read().split()]
    out = []
    for pid in pids:
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() != "laurel-metrics":
                    out.append(pid)
        except OSError:
            pass
    return out


def metrics_process(st):
    pool = next(p for p in st.procs if p.name == "worker1")
    with open("/proc/%d/task/%d/children" % (pool.pid, pool.pid)) as f:
        pids = [int(x) for x in f.read().split()]
    for pid in pids:
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "laurel-metrics":
                    return pid
        except OSError:
            pass
    return None


def check_worker_endpoint(wbase):
    status, text = fetch(wbase + "/metrics")
    check_eq(status, 200, "worker pool: GET /metrics")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    check(r.returncode == 0, "worker pool: promtool check metrics accepts the output",
          r.stdout + r.stderr)
    m = parse_exposition(text)
    check_eq(m.get("laurel_worker_processes"), 2.0, "worker pool: 2 processes counted")
    for route in ("hello", "not_found", "echo"):
        check('laurel_worker_consumer_seconds_count{route="%s"}' % route in m,
              "worker pool: route %s is a label before its first message" % route)
    check_eq(fetch(wbase + "/healthz")[0], 200, "worker pool: GET /healthz")
    end = time.monotonic() + 5
    while time.monotonic() < end and fetch(wbase + "/readyz")[0] != 200:
        time.sleep(0.1)
    check_eq(fetch(wbase + "/readyz"), (200, '{"ready": true}\n'), "worker pool: GET /readyz")


def check_worker_counts(prom, wbase, wbefore):
    def want(key, delta):
        return wbefore.get(key, 0) + delta
    msgs = 'laurel_worker_messages_total{channel="%s",result="ok"}'
    route = 'laurel_worker_route_messages_total{route="%s",result="ok"}'
    for q, delta, what in (
            (msgs % "http.request", N_OK + N_404, "http.request messages consumed"),
            (msgs % "websocket.connect", 1, "websocket.connect consumed"),
            (msgs % "websocket.receive", K_WS, "websocket.receive consumed"),
            (msgs % "websocket.disconnect", 1, "websocket.disconnect consumed"),
            (route % "hello", N_OK, "route hello"),
            (route % "not_found", N_404, "route not_found"),
            (route % "echo", K_WS + 2, "route echo (connect, receives, disconnect)"),
            ('laurel_worker_consumer_seconds_count{route="hello"}', N_OK,
             "run-time histogram of hello counted every run"),
            ('laurel_worker_consumer_seconds_bucket{route="echo",le="+Inf"}', K_WS + 2,
             "run-time histogram of echo: +Inf bucket")):
        check_eq(prom.wait_for('sum(%s)' % q, want(q, delta)), want(q, delta),
                 "Prometheus: worker pool: " + what)
    total = N_OK + N_404 + K_WS + 2
    q = "laurel_worker_batch_messages_sum"
    check_eq(prom.wait_for(q, want(q, total)), want(q, total),
             "Prometheus: worker pool: the batches held every message")
    q = 'laurel_worker_held_sends_total{kind="channel",result="ok"}'
    check_eq(prom.wait_for(q, want(q, N_OK + N_404 + K_WS + 1)), want(q, N_OK + N_404 + K_WS + 1),
             "Prometheus: worker pool: one held reply per request, echo and accept")

    # A process killed: a restart counted, its counts kept, ready again.
    counted = parse_exposition(fetch(wbase + "/metrics")[1])
    victim = pool_children(prom.st)[0]
    os.kill(victim, 9)
    check_eq(prom.wait_for("laurel_worker_process_restarts_total", 1.0), 1.0,
             "Prometheus: worker pool: a process killed counts one restart")
    end = time.monotonic() + 10
    while time.monotonic() < end and (len(pool_children(prom.st)) != 2
                                      or fetch(wbase + "/readyz")[0] != 200):
        time.sleep(0.1)
    check(victim not in pool_children(prom.st) and len(pool_children(prom.st)) == 2,
          "worker pool: the killed process was replaced")
    check_eq(fetch(wbase + "/readyz")[0], 200, "worker pool: ready again after the restart")
    after = parse_exposition(fetch(wbase + "/metrics")[1])
    keys = [k for k in counted if k.startswith("laurel_worker_messages_total")
            or k.startswith("laurel_worker_route_messages_total")
            or k.startswith("laurel_worker_consumer_seconds_count")]
    check_eq({k: after.get(k) for k in keys}, {k: counted[k] for k in keys},
             "worker pool: the killed process's counts are kept")

    # The metrics process killed: the supervisor starts another on the same listener, and no
    # count is lost (they live in the shared table, not in it).
    mp = metrics_process(prom.st)
    check(mp is not None, "worker pool: a process named laurel-metrics serves the endpoint")
    if mp:
        os.kill(mp, 9)
        end = time.monotonic() + 5
        while time.monotonic() < end and fetch(wbase + "/metrics")[0] != 200:
            time.sleep(0.1)
        again = parse_exposition(fetch(wbase + "/metrics")[1])
        check(metrics_process(prom.st) not in (None, mp) and again.get(keys[0]) == after.get(keys[0]),
              "worker pool: the metrics process killed is replaced, counts kept")
        check_eq(again.get("laurel_worker_process_restarts_total"), 1.0,
                 "worker pool: the metrics process is not counted as a worker restart")


def main(st, mport, wport):
    base = "http://127.0.0.1:%d" % mport
    wbase = "http://127.0.0.1:%d" % wport
    check_worker_endpoint(wbase)
    status, text = fetch(base + "/metrics")
    check_eq(status, 200, "GET /metrics")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    check(r.returncode == 0, "promtool check metrics accepts the output", r.stdout + r.stderr)
    check_eq(fetch(base + "/healthz")[0], 200, "GET /healthz")
    check_eq(fetch(base + "/nothing")[0], 404, "an unknown path is 404")
    check_eq(fetch(base + "/metrics", data=b"x")[0], 405, "POST is 405")
    end = time.monotonic() + 5
    while time.monotonic() < end and fetch(base + "/readyz")[0] != 200:
        time.sleep(0.1)
    status, body = fetch(base + "/readyz")
    check_eq((status, body.strip()), (200, '{"ready": true}'), "GET /readyz when all is well")

    prom = Prometheus(st, "127.0.0.1:%d" % mport, "127.0.0.1:%d" % wport)
    prom.st = st
    check(wait_port(prom.port, 30), "prometheus started")
    check(prom.wait_for('up{job="laurel-interface"}', 1.0) == 1.0, "Prometheus scrapes it")
    check(prom.wait_for('up{job="laurel-worker"}', 1.0) == 1.0,
          "Prometheus scrapes the worker pool")
    before = parse_exposition(fetch(base + "/metrics")[1])
    wbefore = parse_exposition(fetch(wbase + "/metrics")[1])

    for _ in range(N_OK):
        fetch(st.base + "/hello")
    for _ in range(N_404):
        fetch(st.base + "/nowhere")
    asyncio.run(ws_echo(st.ws_base + "/echo/", K_WS))

    def want(key, delta):
        return before.get(key, 0) + delta
    ok = 'laurel_interface_http_responses_total{code="2xx"}'
    nf = 'laurel_interface_http_responses_total{code="4xx"}'
    for q, delta, what in (
            (ok, N_OK, "200 responses counted exactly"),
            (nf, N_404, "404 responses counted exactly"),
            ('laurel_interface_websocket_messages_total{direction="in"}', K_WS,
             "WebSocket messages in"),
            ('laurel_interface_websocket_messages_total{direction="out"}', K_WS,
             "WebSocket messages out"),
            ('laurel_interface_websocket_payload_bytes_total{direction="in"}',
             sum(len("m%d" % i) for i in range(K_WS)), "WebSocket payload bytes in"),
            ('laurel_interface_websocket_handshakes_total{result="accepted"}', 1,
             "handshakes accepted"),
            ('laurel_interface_websocket_closes_total{code="1000"}', 1, "closes with 1000"),
            ("laurel_interface_connections_accepted_total", N_OK + N_404 + 1,
             "connections accepted (one per request, one WebSocket)")):
        check_eq(prom.wait_for(q, want(q, delta)), want(q, delta), "Prometheus: " + what)
    responses = sum(before.get('laurel_interface_http_responses_total{code="%s"}' % c, 0)
                    for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")) + N_OK + N_404
    check_eq(prom.wait_for("laurel_interface_http_request_duration_seconds_count", responses),
             responses, "Prometheus: the latency histogram counted every response")
    check_eq(prom.wait_for('laurel_interface_http_request_duration_seconds_bucket{le="+Inf"}',
                           responses), responses, "Prometheus: the +Inf bucket equals the count")
    check((prom.query('laurel_interface_layer_sends_total{result="ok"}') or 0)
          >= N_OK + N_404 + K_WS, "Prometheus: layer sends ok cover the requests and messages")
    check_worker_counts(prom, wbase, wbefore)

    # Readiness follows the reply path: Redis killed -> 503 within 2 s; back -> 200.
    redis = st.procs[0]
    redis.kill()
    redis.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and fetch(base + "/readyz")[0] != 503:
        time.sleep(0.05)
    took = time.monotonic() - t0
    status, body = fetch(base + "/readyz")
    check(status == 503 and took <= 2.0, "/readyz is 503 within 2 s of Redis dying",
          (status, round(took, 2)))
    while time.monotonic() - t0 < 5 and fetch(wbase + "/readyz")[0] != 503:
        time.sleep(0.05)
    wtook = time.monotonic() - t0
    wstatus, wbody = fetch(wbase + "/readyz")
    check(wstatus == 503 and wtook <= 2.0,
          "worker pool: /readyz is 503 within 2 s of Redis dying", (wstatus, round(wtook, 2)))
    check("unreachable" in json.loads(wbody or "{}").get("reason", ""),
          "worker pool: /readyz says the layer is unreachable", wbody)
    check_eq(fetch(wbase + "/healthz")[0], 200, "worker pool: /healthz stays 200")
    check("reason" in json.loads(body or "{}"), "/readyz says why", body)
    check_eq(fetch(base + "/healthz")[0], 200, "/healthz stays 200 (the process is alive)")
    again = st._start("redis2", ["redis-server", "--port", str(st.redis_port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no"])
    st.procs.remove(again)
    st.procs[0] = again  # the harness stops procs[0], Redis, last
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and fetch(base + "/readyz")[0] != 200:
        time.sleep(0.05)
    print("info: /readyz 503 %.2f s after Redis died, 200 again %.2f s after it came back"
          % (took, time.monotonic() - t0), flush=True)
    check_eq(fetch(base + "/readyz")[0], 200, "/readyz is 200 again once Redis is back")
    while time.monotonic() - t0 < 10 and fetch(wbase + "/readyz")[0] != 200:
        time.sleep(0.05)
    check_eq(fetch(wbase + "/readyz")[0], 200,
             "worker pool: /readyz is 200 again once Redis is back")
    check(prom.wait_for("laurel_interface_layer_outages_total", 1.0) == 1.0,
          "Prometheus: one outage counted")


def runserver(build):
    """laurel runserver --metrics: the interface's and the worker threads' families on one
    endpoint, counted exactly, accepted by promtool, ready."""
    port, mport = free_port(), free_port()
    p = subprocess.Popen([os.path.join(build, "tool", "laurel"), "runserver", "--app", "echo",
                          "-p", str(port), "--workers", "2", "--metrics",
                          "127.0.0.1:%d" % mport, "-v", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        check(wait_port(port) and wait_port(mport), "runserver --metrics started")
        base = "http://127.0.0.1:%d" % mport
        for _ in range(20):
            fetch("http://127.0.0.1:%d/hello" % port)
        m = parse_exposition(fetch(base + "/metrics")[1])
        check_eq(m.get('laurel_interface_http_responses_total{code="2xx"}'), 20.0,
                 "runserver: the interface's responses counted")
        check_eq(m.get('laurel_worker_route_messages_total{route="hello",result="ok"}'), 20.0,
                 "runserver: the worker threads' messages counted")
        check_eq(m.get("laurel_worker_processes"), 3.0,
                 "runserver: 2 worker threads and the delay service counted")
        r = subprocess.run(["promtool", "check", "metrics"], input=fetch(base + "/metrics")[1],
                           capture_output=True, text=True)
        check(r.returncode == 0, "runserver: promtool check metrics accepts the output",
              r.stdout + r.stderr)
        end = time.monotonic() + 5
        while time.monotonic() < end and fetch(base + "/readyz")[0] != 200:
            time.sleep(0.1)
        check_eq(fetch(base + "/readyz")[0], 200, "runserver: /readyz")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
        check("ERROR: AddressSanitizer" not in err.decode(errors="replace")
              and "runtime error:" not in err.decode(errors="replace"),
              "runserver: no sanitizer report", err[-2000:])


if __name__ == "__main__":
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        print("SKIP: prometheus is not installed (scripts/deps installs it)")
        sys.exit(77)
    st = Stack("echo", workers=1, timeout=100)
    mport, wport = free_port(), free_port()
    st.interface_args = ["--metrics", "127.0.0.1:%d" % mport]
    st.worker_args = ["--processes", "2", "--metrics", "127.0.0.1:%d" % wport]
    with st:
        main(st, mport, wport)
    runserver(st.build)
    sys.exit(done())
