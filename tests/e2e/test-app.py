#!/usr/bin/python3
"""An application's lifecycle and options (include/laurel/routing.h), with the test application
and real processes: --app-option and LAUREL_APP_OPTIONS reach its init, each worker (each process
of a pool, each runserver thread) gets its own data that lasts across messages, fini runs when a
worker stops, a name the application does not declare and a failing init stop the program with
a clear message, and --help lists the application's options."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, build_dir, check, check_eq, done, free_port, http, wait_port

os.environ.pop("LAUREL_E2E_MODE", None)  # its own processes; runserver is tested below
BUILD = build_dir()
WORKER = os.path.join(BUILD, "worker", "laurel-worker")
LAUREL = os.path.join(BUILD, "tool", "laurel")
TESTAPP = os.path.join(BUILD, "tests", "integration", "worker", "liblaurel-testapp.so")


def appdata(base, n):
    """n GET /appdata answers, parsed."""
    out = []
    for _ in range(n):
        status, _, body = http("GET", base + "/appdata")
        m = re.fullmatch(rb"tag=(\S*) worker=(\d+) messages=(\d+) pid=(\d+)", body)
        out.append((status, m.group(1).decode(), int(m.group(2)), int(m.group(3)),
                    int(m.group(4))) if m else (status, body))
    return out


def run(argv, env=None, timeout=10):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


# --- Options reach init; each worker process has its own data, kept across messages. ---------
with Stack(TESTAPP, workers=1, timeout=50) as st:
    fini = os.path.join(st.dir, "fini.txt")
    st.worker_args = []  # (already started: the stack's own worker runs without options)
    r = appdata(st.base, 3)
    check_eq([x[1:4] for x in r], [("none", 0, 1), ("none", 0, 2), ("none", 0, 3)],
             "without --app-option: the default tag, one worker's count grows")

    # A pool of two processes with options from the command line.
    pool = st._start("pool", [WORKER, "--app", TESTAPP, "--layer", st.layer, "--processes", "2",
                              "--app-option", "tag=blue", "--app-option", "fini-file=" + fini,
                              "--only-channels", "http.request"])
    # The stack's worker stops, so the pool answers alone.
    st.procs[1].send_signal(signal.SIGTERM)
    st.procs[1].wait(timeout=10)
    time.sleep(0.5)
    seen = {}
    for status, tag, worker, messages, pid in appdata(st.base, 40):
        check(status == 200 and tag == "blue", "the pool answers with tag=blue", (status, tag))
        seen.setdefault(pid, []).append((worker, messages))
    check_eq(len(seen), 2, "two worker processes answered")
    check_eq(sorted(v[0][0] for v in seen.values()), [0, 1],
             "laurel_app_worker: the processes' slots 0 and 1")
    for pid, v in seen.items():
        check_eq([m for _, m in v], list(range(1, len(v) + 1)),
                 "process %d: its own data, one more message each time" % pid)
    pool.send_signal(signal.SIGTERM)
    check_eq(pool.wait(timeout=10), 0, "the pool stops on SIGTERM")
    lines = sorted(open(fini).read().splitlines()) if os.path.exists(fini) else []
    want = sorted("fini tag=blue worker=%d messages=%d" % (v[0][0], len(v))
                  for v in seen.values())
    check_eq(lines, want, "fini ran once in each process, with its data")

    # From the environment, when no --app-option is given.
    w = subprocess.Popen([WORKER, "--app", TESTAPP, "--layer", st.layer, "--processes", "0",
                          "--only-channels", "http.request"],
                         env=dict(os.environ, LAUREL_APP_OPTIONS="tag=green  fini-file=" + fini),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = appdata(st.base, 2)
    check_eq([x[1:4] for x in r], [("green", 0, 1), ("green", 0, 2)],
             "LAUREL_APP_OPTIONS: tag=green, worker 0 (no pool)")
    w.send_signal(signal.SIGTERM)
    check_eq(w.wait(timeout=10), 0, "the worker stops on SIGTERM")
    check("fini tag=green worker=0 messages=2" in open(fini).read(),
          "fini ran in the worker without a pool")

    # --- Refused before anything starts. ------------------------------------------------------
    r = run([WORKER, "--app", TESTAPP, "--layer", st.layer, "--app-option", "colour=red"])
    check_eq(r.returncode, 2, "an option the application does not declare: exit status 2")
    check("has no option \"colour\"" in r.stderr and "tag, init-fail, fini-file" in r.stderr,
          "the message names it and lists the application's options", r.stderr)
    r = run([WORKER, "--app", TESTAPP, "--layer", st.layer],
            env={"LAUREL_APP_OPTIONS": "tag=x colour=red"})
    check(r.returncode == 2 and "colour" in r.stderr and "LAUREL_APP_OPTIONS" in r.stderr,
          "a bad name in LAUREL_APP_OPTIONS: refused, the variable named", (r.returncode, r.stderr))
    r = run([WORKER, "--app", TESTAPP, "--layer", st.layer, "--app-option", "tag"])
    check(r.returncode == 2 and "NAME=VALUE" in r.stderr, "an --app-option without '='",
          (r.returncode, r.stderr))
    r = run([WORKER, "--app", TESTAPP, "--layer", st.layer, "--processes", "0",
             "--app-option", "init-fail=1"])
    check_eq(r.returncode, 2, "a failing init (no pool): exit status 2")
    check("init failed: asked to fail (init-fail=1)" in r.stderr,
          "its reason is logged", r.stderr)
    # In a pool the supervisor keeps it down with a backoff: a few lines, not a flood.
    p = subprocess.Popen([WORKER, "--app", TESTAPP, "--layer", st.layer, "--processes", "1",
                          "--app-option", "init-fail=1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=10)[1]
    n = err.count("init failed")
    check(1 <= n <= 8, "a pool whose init fails: logged with a backoff (%d lines in 3 s)" % n,
          err[-1500:])

    # --help lists the application's options.
    r = run([WORKER, "--app", TESTAPP, "--help"])
    check(r.returncode == 0 and "Options of the application testapp" in r.stdout
          and "init-fail" in r.stdout and 'Default: "none"' in r.stdout,
          "laurel-worker --app PATH --help lists them", r.stdout[-800:])

# --- laurel runserver: one init per worker thread, fini for each at the end. -----------------
port = free_port()
fini = os.path.join(os.path.dirname(TESTAPP), "runserver-fini-%d.txt" % os.getpid())
rs = subprocess.Popen([LAUREL, "runserver", "--app", TESTAPP, "-p", str(port), "--workers", "3",
                       "--app-option", "tag=rs", "--app-option", "fini-file=" + fini, "-v", "0"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    check(wait_port(port), "runserver starts")
    seen = {}
    for x in appdata("http://127.0.0.1:%d" % port, 60):
        check(x[0] == 200 and x[1] == "rs", "runserver answers with tag=rs", x)
        seen.setdefault(x[2], []).append(x[3])
    check(set(seen) <= {0, 1, 2} and len(seen) >= 2,
          "laurel_app_worker: the threads' numbers (%s)" % sorted(seen), seen)
    for worker, counts in seen.items():
        check_eq(counts, list(range(1, len(counts) + 1)),
                 "thread %d: its own data, never shared" % worker)
finally:
    rs.send_signal(signal.SIGINT)
    rs.wait(timeout=10)
lines = sorted(open(fini).read().splitlines()) if os.path.exists(fini) else []
check_eq(len(lines), 3, "runserver: fini once for each of the 3 workers")
check(all(l.startswith("fini tag=rs worker=") for l in lines), "with each one's data", lines)
if os.path.exists(fini):
    os.unlink(fini)
r = run([LAUREL, "runserver", "--app", TESTAPP, "-p", str(free_port()), "--app-option",
         "init-fail=1"])
check(r.returncode == 2 and "init failed: asked to fail" in r.stderr,
      "runserver: a failing init stops it with the reason", (r.returncode, r.stderr))
r = run([LAUREL, "runserver", "--app", TESTAPP, "--help"])
check("Options of the application testapp" in r.stdout, "laurel runserver --app X --help lists them",
      r.stdout[-500:])

sys.exit(done())
