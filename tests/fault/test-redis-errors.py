#!/usr/bin/python3
"""Fault test: Redis answering with errors (not just going away) must not make laurel spin, flood
its log or start half-working; it must answer HTTP with 503 at once while the error lasts and come
back by itself when it ends (docs/layer.md, "When Redis goes away").

One real redis-server on a free loopback port, with a password on the default user (the test's own
redis-cli calls) and an ACL user "laurel" that the laurel processes log in as; the echo example
(examples/echo) in laurel-interface + one laurel-worker + the asgi.delay service (laurel-worker
--delay), started and stopped here (tests/e2e/harness.py's Stack and checks).

A. Start-up with credentials that cannot work: a wrong password, no password, an ACL user without
   BLPOP, one without EVALSHA. laurel-interface, laurel-worker and `laurel stats` must each exit
   non-zero within a few seconds, naming the server (its URL without the password) and Redis's
   error (WRONGPASS, NOAUTH, NOPERM) on stderr.
B. Errors while running, each made for real against the running stack:
   1. credentials revoked (the laurel user's password changed, its connections killed: WRONGPASS
      on reconnection);
   2. permission revoked (ACL SETUSER laurel -evalsha -blpop, connections killed: NOPERM);
   3. READONLY (REPLICAOF another redis-server: blocked BLPOPs get UNBLOCKED, then READONLY);
   4. LOADING (redis-server restarted on the same port on an RDB file that takes ~6 s to load:
      connect, AUTH and CLIENT ID work, every other command answers LOADING).
   While the error lasts: each laurel process (the worker's and the delay service's supervisor
   with their children) uses < 5% of a core; each writes at most a few log lines for the whole
   outage, among them one naming the error (for LOADING, a line about the restart's closed
   connection will do) and one, written after the error has ended, saying that the server is back;
   HTTP requests get 503 at once and do not each add a log line. Once the error is cleared the
   stack answers HTTP (200) and WebSocket echoes within 5 s without anything being restarted, and
   no laurel process has been replaced.
C. A 30 s outage (redis-server killed) under HTTP load (4 client threads, thousands of requests):
   every request is answered 503 at once, the interface logs a handful of lines at most, and it
   all works again within 5 s of redis-server's restart.

Ends with "N passed, N failed"; takes about 95 s (a 235 s alarm ends a stuck run).

Usage: test-redis-errors.py BUILD_DIR"""
import asyncio
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

import websockets  # noqa: E402

from harness import Stack, check, done, free_port, short, wait_port  # noqa: E402

ADMIN_PW = "secret"        # the default user's password: this test's own redis-cli calls
USER, PW = "laurel", "lpw4711"  # the ACL user the laurel processes log in as
BAD_PW = "badpw7c1"        # a wrong password (also checked not to be printed)
HOLD = 7.0                 # seconds each error of B lasts
CPU_MAX = 0.05             # share of one core a laurel process may use while an error lasts
LINES_MAX = 6              # log lines a process may write for one outage (B)
LINES_MAX_C = 10           # ... for the 30 s outage under load (C)
BURST = 8                  # HTTP requests sent while an error lasts
BURST_LINES_MAX = 2        # log lines those may add to the interface's log
FAST = 2.0                 # seconds within which a 503 must come
RECOVER = 5.0              # seconds within which the stack must answer again
LOAD_KEYS = 60000          # keys of the RDB file for LOADING, loaded at KEY_LOAD_DELAY us a key:
KEY_LOAD_DELAY = 10        # about 6 s here
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROLES = ("interface", "worker", "delay")


def proc_table():
    """{pid: (ppid, own ticks, waited-for children's ticks)} from /proc/*/stat."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        # fields 4 (ppid), 14 utime, 15 stime, 16 cutime, 17 cstime; f[0] is field 3
        t[int(d)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
    return t


def tree(pid, table):
    """pid and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, v in table.items() if v[0] == p)
    return out


def tree_ticks(pid, table=None):
    """CPU ticks used by pid and all its descendants so far (dead ones through cutime)."""
    table = table or proc_table()
    return sum(table[p][1] + table[p][2] for p in tree(pid, table) if p in table)


def get(port, path="/hello", timeout=3.0):
    """One GET on a new connection: (status or exception name, seconds)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        status = r.status
    except Exception as e:  # noqa: BLE001 -- a hang or a reset is what is being looked for
        status = type(e).__name__
    finally:
        c.close()
    return status, round(time.monotonic() - t0, 3)


def burst(port, n):
    """n GETs at once; their (status, seconds) in order."""
    res = [None] * n

    def one(i):
        res[i] = get(port, timeout=FAST + 2)
    th = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return res


def ws_try(url, frame, timeout):
    """Sends frame on a new WebSocket and returns what comes back (or the error's name)."""
    async def go():
        async with websockets.connect(url, open_timeout=timeout, close_timeout=1) as ws:
            await ws.send(frame)
            return await asyncio.wait_for(ws.recv(), timeout)
    try:
        return asyncio.run(asyncio.wait_for(go(), timeout + 1))
    except Exception as e:  # noqa: BLE001
        return "%s: %s" % (type(e).__name__, e)


class ErrStack(Stack):
    """The harness's Stack with a password-protected redis-server (from a config file, so that it
    restarts the same on the same port) and one worker, the delay service and one interface, each
    kept by role so that they can be measured and, after a failed recovery, replaced."""

    def __init__(self):
        super().__init__("echo", workers=1, timeout=235)
        self.layer = "redis://%s:%s@127.0.0.1:%d" % (USER, PW, self.redis_port)
        self.addr = "127.0.0.1:%d" % self.redis_port
        self.url = "redis://" + self.addr  # how the server is named, without the password
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\n"
                    "requirepass %s\nuser %s on >%s ~* &* +@all\n"
                    # Only matter when an RDB file is loaded (B4): slow and answering meanwhile.
                    "key-load-delay %d\nloading-process-events-interval-bytes 4096\n"
                    % (self.redis_port, self.dir, ADMIN_PW, USER, PW, KEY_LOAD_DELAY))
        self.role = {}
        self.generation = 0

    def start_redis(self):
        p = self._start("redis%d" % self.generation if self.generation else "redis",
                        ["redis-server", self.conf])
        self.procs.remove(p)
        self.procs.insert(0, p)  # the harness stops procs[0] (redis) last
        if not wait_port(self.redis_port):
            raise RuntimeError("redis-server did not start")
        return p

    def kill_redis(self):
        p = self.procs.pop(0)
        p.kill()
        p.wait()
        self.generation += 1

    def start_laurel(self):
        sfx = "-%d" % self.generation if self.generation else ""
        b = self.build
        argv = {
            "worker": [os.path.join(b, "worker", "laurel-worker"), "--app", self.apps[0][0],
                       "--layer", self.layer, "--processes", "1", "-v"],
            "delay": [os.path.join(b, "worker", "laurel-worker"), "--delay", "--layer",
                      self.layer, "--processes", "1", "-v"],
            "interface": [os.path.join(b, "interface", "laurel-interface"), "-b", "127.0.0.1",
                          "-p", str(self.port), "--layer", self.layer],
        }
        for r in ROLES:
            self.role[r] = self._start(r + sfx, argv[r])
        if not wait_port(self.port):
            raise RuntimeError("laurel-interface did not start:\n" + self.logs())
        self.wait_workers()

    def restart_laurel(self):
        """Kills the laurel processes (all of each one's process group) and starts new ones."""
        for r in ROLES:
            p = self.role[r]
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
            self.procs.remove(p)
        self.generation += 1
        self.start_laurel()

    def __enter__(self):
        try:
            self.start_redis()
            self.start_laurel()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def cli(self, *args, user=None, pw=ADMIN_PW, port=None):
        argv = ["redis-cli", "-p", str(port or self.redis_port), "--no-auth-warning"]
        argv += ["--user", user, "--pass", pw] if user else ["-a", pw] if pw else []
        try:
            r = subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                               timeout=5)
            return (r.stdout + r.stderr).strip()
        except subprocess.TimeoutExpired:
            return "(redis-cli timed out)"

    def wait_workers(self, timeout=10.0):
        """Every laurel process has a Redis client in BLPOP (worker, delay service, interface)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.cli("CLIENT", "LIST").count("cmd=blpop") >= 3:
                return True
            time.sleep(0.05)
        raise RuntimeError("the laurel processes did not start:\n" + self.logs())

    def log_path(self, role):
        return os.path.join(self.dir, self.role[role].name + ".log")

    def log_size(self, role):
        try:
            return os.path.getsize(self.log_path(role))
        except OSError:
            return 0

    def log_since(self, role, offset):
        """The lines written to role's log since offset: all of them if there are few, else the
        first and the last KEEP (a flood is counted, not kept)."""
        return LogLines(self.log_path(role), offset)

    def pids(self):
        """{role: (pid, its live descendants)}; a replaced worker child changes the second."""
        t = proc_table()
        return {r: (self.role[r].pid, sorted(tree(self.role[r].pid, t)[1:])) for r in ROLES}

    def ticks(self):
        t = proc_table()
        return {r: tree_ticks(self.role[r].pid, t) for r in ROLES}

    def healthy(self, timeout=3.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if get(self.port, timeout=2)[0] == 200:
                return True
            time.sleep(0.1)
        return False


class LogLines(list):
    """The lines of a log file from a byte offset on; len() is their number even when only the
    first and last KEEP are kept."""
    KEEP = 2000

    def __init__(self, path, offset):
        super().__init__()
        head, tail, n, rest = [], [], 0, b""
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                parts = (rest + chunk).split(b"\n")
                rest = parts.pop()
                n += len(parts)
                room = self.KEEP - len(head)
                head.extend(parts[:room])
                tail = (tail + parts[room:])[-self.KEEP:]
        self.n = n
        self.extend(x.decode("utf-8", "replace") for x in head + tail)

    def __len__(self):
        return self.n


def line_time(line):
    """The wall-clock time of a laurel log line ("2026-01-31 12:34:56.789 program level: ..."),
    or None."""
    try:
        return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1e3
    except (ValueError, IndexError):
        return None


def back_lines(st, lines, since):
    """The lines, written at or after the wall-clock time since, that say the server is back."""
    return [ln for ln in lines if st.addr in ln and ("again" in ln or "back" in ln)
            and (line_time(ln) or 0) >= since - 0.05]


def lines_detail(lines):
    first = lines[:3]
    return "%d lines; first %s; last %s" % (len(lines), short(first, 400),
                                           short(lines[-1:], 200))


# --- A: start-up with credentials that cannot work -----------------------------------------------


def part_a(st):
    st.cli("ACL", "SETUSER", "noblpop", "on", ">pw", "~*", "&*", "+@all", "-blpop")
    st.cli("ACL", "SETUSER", "noevalsha", "on", ">pw", "~*", "&*", "+@all", "-evalsha")
    p = st.redis_port
    cases = [
        ("wrong password", "redis://:%s@127.0.0.1:%d" % (BAD_PW, p), ("WRONGPASS",)),
        ("no password", "redis://127.0.0.1:%d" % p, ("NOAUTH",)),
        ("user without BLPOP", "redis://noblpop:pw@127.0.0.1:%d" % p, ("NOPERM",)),
        ("user without EVALSHA", "redis://noevalsha:pw@127.0.0.1:%d" % p, ("NOPERM",)),
    ]
    b = st.build
    running = []
    t0 = time.monotonic()
    for what, url, tokens in cases:
        for prog, argv in [
            ("laurel-interface", [os.path.join(b, "interface", "laurel-interface"), "-b",
                                  "127.0.0.1", "-p", str(free_port()), "--layer", url]),
            ("laurel-worker", [os.path.join(b, "worker", "laurel-worker"), "--app",
                               st.apps[0][0], "--layer", url, "--processes", "1"]),
            ("laurel stats", [os.path.join(b, "tool", "laurel"), "--layer", url, "stats"]),
        ]:
            path = os.path.join(st.dir, "a-%d.err" % len(running))
            with open(path, "wb") as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err, cwd=st.dir, start_new_session=True)
            running.append((what, url, tokens, prog, proc, path))
    # All at once, so that programs that do not exit cost the wait once.
    end = t0 + 5.0
    for *_, proc, _path in running:
        try:
            proc.wait(timeout=max(0.01, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    took, table = {}, proc_table()
    spent = time.monotonic() - t0
    for what, _url, _tokens, prog, proc, _path in running:
        if proc.poll() is None:
            print("info: A %s: %s still running after %.1f s, has used %.0f%% of a core"
                  % (what, prog, spent, 100 * tree_ticks(proc.pid, table) / CLK_TCK / spent),
                  flush=True)
    for *_, proc, _path in running:
        took[proc.pid] = proc.poll()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for what, url, tokens, prog, proc, path in running:
        rc = took[proc.pid]
        with open(path, "rb") as f:
            err = f.read(1 << 20).decode("utf-8", "replace")
        nlines = err.count("\n")
        name = "A %s: %s" % (what, prog)
        check(rc is not None and rc != 0, name + " exits non-zero within 5 s",
              "still running after 5 s (%d lines on stderr)" % nlines if rc is None else
              "exit %d" % rc)
        named = [ln for ln in err.splitlines() if st.url in ln and any(t in ln for t in tokens)]
        check(bool(named), "%s says on stderr, on one line, %s and %s" % (name, st.url,
                                                                           " or ".join(tokens)),
              err[:300] or "(nothing)")
        if BAD_PW in url:
            check(BAD_PW not in err, name + " does not print the password", err[:300])


# --- B: errors while running -------------------------------------------------------------------


def outage(st, name, tokens, make, clear, probe, expect, loading=False):
    """Makes an error with make(), holds it HOLD s (or, loading, until Redis has loaded), clears
    it with clear(), and checks laurel's behaviour meanwhile and after."""
    if not st.healthy():
        print("note: the stack does not answer before %s; restarting the laurel processes"
              % name, flush=True)
        st.restart_laurel()
    pids = st.pids()
    marks = {r: st.log_size(r) for r in ROLES}
    t_make = time.monotonic()
    make()
    time.sleep(0.5 if loading else 1.0)  # the error has been seen
    seen = probe()
    print("info: %s: redis-cli as the laurel user gets: %s" % (name, seen), flush=True)
    check(expect in seen, "%s: the error is real (redis-cli as %s gets %s)" % (name, USER, expect),
          seen)
    t1, c1 = time.monotonic(), st.ticks()
    time.sleep(1.0 if loading else 2.0)
    imark = st.log_size("interface")
    res = burst(st.port, BURST)
    time.sleep(0.3)
    burst_lines = st.log_since("interface", imark)
    if loading:
        error_end = time.time()
        end = time.monotonic() + 25
        while time.monotonic() < end:
            asked = time.time()
            if "LOADING" not in st.cli("PING"):
                break
            error_end = asked  # Redis still answered LOADING then
            time.sleep(0.1)
        loaded_after = time.monotonic() - t_make
        check(loaded_after >= 3.0, "%s: Redis answered LOADING for a few seconds" % name,
              round(loaded_after, 2))
    else:
        time.sleep(max(0.0, t1 + HOLD - time.monotonic()))
    t2, c2 = time.monotonic(), st.ticks()
    window = t2 - t1
    cpu = {r: (c2[r] - c1[r]) / CLK_TCK / window for r in ROLES}
    print("info: %s: CPU over %.1f s: %s" % (name, window, ", ".join(
        "%s %.1f%%" % (r, 100 * cpu[r]) for r in ROLES)), flush=True)
    for r in ROLES:
        check(cpu[r] < CPU_MAX, "%s: %s uses < %d%% of a core while the error lasts"
              % (name, r, 100 * CPU_MAX), "%.1f%%" % (100 * cpu[r]))
    check(all(s == 503 and t < FAST for s, t in res),
          "%s: %d HTTP requests during the error all get 503 within %g s" % (name, BURST, FAST),
          res)
    check(len(burst_lines) <= BURST_LINES_MAX,
          "%s: those requests add at most %d lines to the interface's log"
          % (name, BURST_LINES_MAX), lines_detail(burst_lines))

    if not loading:
        error_end = time.time()  # a line saying "back" must come after this
    clear()
    t_clear = time.monotonic()
    status, end = None, t_clear + RECOVER
    while time.monotonic() < end:
        status = get(st.port, timeout=max(0.2, min(2.0, end - time.monotonic())))[0]
        if status == 200:
            break
        time.sleep(0.1)
    recovered = status == 200
    check(recovered, "%s: GET /hello answers 200 within %g s of the error's end, nothing "
          "restarted" % (name, RECOVER), "last: %s after %.1f s" % (status,
                                                                   time.monotonic() - t_clear))
    got = ws_try(st.ws_base + "/echo/", "echo after " + name, 3)
    check(got == "echo after " + name, "%s: a WebSocket echo works again" % name, got)
    got = ws_try(st.ws_base + "/echo/", "later:delayed after " + name, 4)
    check(got == "delayed after " + name, "%s: the delay service works again" % name, got)
    time.sleep(1.0)
    now = st.pids()
    for r in ROLES:
        alive = st.role[r].poll() is None
        check(alive and now[r] == pids[r], "%s: %s is still the same process(es)" % (name, r),
              "exited %s" % st.role[r].poll() if not alive else "%s, was %s" % (now[r], pids[r]))
    for r in ROLES:
        lines = st.log_since(r, marks[r])
        print("info: %s: %s wrote %d log lines during the outage" % (name, r, len(lines)),
              flush=True)
        check(len(lines) <= LINES_MAX, "%s: %s writes at most %d log lines for the outage"
              % (name, r, LINES_MAX), lines_detail(lines))
        check(any(st.addr in ln and any(t in ln for t in tokens) for ln in lines),
              "%s: %s logs a line naming %s and the error (%s)" % (name, r, st.addr,
                                                                   " or ".join(tokens)),
              lines_detail(lines))
        check(bool(back_lines(st, lines, error_end)),
              "%s: %s logs, after the error has ended, that %s is back (a line with 'again' "
              "or 'back')" % (name, r, st.addr), lines_detail(lines))
    if not recovered:
        print("note: restarting the laurel processes so that the next case starts clean",
              flush=True)
        st.restart_laurel()


def part_b(st):
    def as_laurel(*args):
        return lambda: st.cli(*args, user=USER, pw=PW)
    blpop = ("BLPOP", "asgi:probe", "0.01")
    script = ("EVAL", "return redis.call('rpush', KEYS[1], 'x')", "1", "asgi:probe")

    # 1. credentials revoked
    outage(st, "B1 credentials revoked", ("WRONGPASS", "NOAUTH"),
           lambda: (st.cli("ACL", "SETUSER", USER, "resetpass", ">changed"),
                    st.cli("CLIENT", "KILL", "USER", USER)),
           lambda: st.cli("ACL", "SETUSER", USER, "resetpass", ">" + PW),
           as_laurel("PING"), "WRONGPASS")

    # 2. permission revoked
    def revoke():
        st.cli("ACL", "SETUSER", USER, "-evalsha", "-blpop")
        st.cli("CLIENT", "KILL", "USER", USER)

    def probe2():
        return " | ".join([as_laurel(*blpop)(), as_laurel("EVALSHA", "0" * 40, "0")()])
    outage(st, "B2 permission revoked", ("NOPERM", "can't run this command"), revoke,
           lambda: st.cli("ACL", "SETUSER", USER, "+evalsha", "+blpop"), probe2, "NOPERM")
    # What a command refused inside a script looks like (not NOPERM but ERR ...).
    st.cli("ACL", "SETUSER", USER, "-rpush")
    print("info: a command refused inside a script: %s" % as_laurel(*script)(), flush=True)
    st.cli("ACL", "SETUSER", USER, "+rpush")

    # 3. READONLY: the layer's redis-server becomes a replica of another one.
    mport = free_port()
    mdir = os.path.join(st.dir, "master")
    os.mkdir(mdir)
    master = st._start("master", ["redis-server", "--port", str(mport), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", mdir])
    if not wait_port(mport):
        raise RuntimeError("the second redis-server did not start")

    def probe3():
        return " | ".join([as_laurel(*blpop)(), as_laurel(*script)()])
    outage(st, "B3 READONLY", ("READONLY", "UNBLOCKED", "replica"),
           lambda: st.cli("REPLICAOF", "127.0.0.1", mport),
           lambda: st.cli("REPLICAOF", "NO", "ONE"), probe3, "READONLY")
    master.terminate()
    master.wait()
    st.procs.remove(master)

    # 4. LOADING: the RDB file is made by a third redis-server beforehand, then redis-server is
    # restarted on the same port on it.
    bdir = os.path.join(st.dir, "big")
    os.mkdir(bdir)
    bport = free_port()
    big = st._start("big", ["redis-server", "--port", str(bport), "--bind", "127.0.0.1", "--save",
                            "", "--appendonly", "no", "--dir", bdir, "--enable-debug-command",
                            "local"])
    if not wait_port(bport):
        raise RuntimeError("the third redis-server did not start")
    st.cli("DEBUG", "POPULATE", LOAD_KEYS, pw=None, port=bport)
    st.cli("SAVE", pw=None, port=bport)
    big.terminate()
    big.wait()
    st.procs.remove(big)

    def restart_on_rdb():
        st.kill_redis()
        shutil.copy(os.path.join(bdir, "dump.rdb"), os.path.join(st.dir, "dump.rdb"))
        st.start_redis()
    # The outage starts with the restart's closed connection, so a line about that will do as
    # its first line here; what must be logged is that it is over once loading is.
    outage(st, "B4 LOADING", ("LOADING", "unreachable", "closed the connection",
                              "Connection reset"), restart_on_rdb, lambda: None,
           as_laurel(*blpop), "LOADING", loading=True)
    os.unlink(os.path.join(st.dir, "dump.rdb"))


# --- C: a 30 s outage under HTTP load ------------------------------------------------------------


def part_c(st):
    if not st.healthy():
        print("note: the stack does not answer before C; restarting the laurel processes",
              flush=True)
        st.restart_laurel()
    pids = st.pids()
    marks = {r: st.log_size(r) for r in ROLES}
    st.kill_redis()
    t1, c1 = time.monotonic(), st.ticks()
    stop = t1 + 30.0
    results = []
    lock = threading.Lock()

    def client():
        mine = []
        while time.monotonic() < stop:
            mine.append(get(st.port, timeout=FAST + 2))
            time.sleep(0.01)
        with lock:
            results.extend(mine)
    th = [threading.Thread(target=client) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    t2, c2 = time.monotonic(), st.ticks()
    during = {r: st.log_since(r, marks[r]) for r in ROLES}
    cpu = {r: (c2[r] - c1[r]) / CLK_TCK / (t2 - t1) for r in ROLES}
    statuses = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    slow = max((t for _, t in results), default=0)
    print("info: C: %d requests in %.1f s: %s, slowest %.3f s; CPU %s; log lines %s"
          % (len(results), t2 - t1, statuses, slow,
             ", ".join("%s %.1f%%" % (r, 100 * cpu[r]) for r in ROLES),
             ", ".join("%s %d" % (r, len(during[r])) for r in ROLES)), flush=True)
    check(len(results) >= 1000, "C: the load made over a thousand requests", len(results))
    check(statuses.get(503, 0) >= 0.99 * len(results) and slow < FAST,
          "C: requests during the outage get 503 within %g s" % FAST,
          "%s, slowest %.3f s" % (statuses, slow))
    for r in ROLES:
        check(len(during[r]) <= LINES_MAX_C, "C: %s writes at most %d log lines during the 30 s "
              "outage under load" % (r, LINES_MAX_C), lines_detail(during[r]))
    for r in ("worker", "delay"):
        check(cpu[r] < CPU_MAX, "C: %s uses < %d%% of a core while Redis is down"
              % (r, 100 * CPU_MAX), "%.1f%%" % (100 * cpu[r]))
    restarted = time.time()
    st.start_redis()
    t_back = time.monotonic()
    status, end = None, t_back + RECOVER
    while time.monotonic() < end:
        status = get(st.port, timeout=max(0.2, min(2.0, end - time.monotonic())))[0]
        if status == 200:
            break
        time.sleep(0.1)
    check(status == 200, "C: GET /hello answers 200 within %g s of redis-server's restart"
          % RECOVER, "last: %s after %.1f s" % (status, time.monotonic() - t_back))
    got = ws_try(st.ws_base + "/echo/", "echo after C", 3)
    check(got == "echo after C", "C: a WebSocket echo works again", got)
    time.sleep(1.0)
    now = st.pids()
    for r in ROLES:
        alive = st.role[r].poll() is None
        check(alive and now[r] == pids[r], "C: %s is still the same process(es)" % r,
              "exited %s" % st.role[r].poll() if not alive else "%s, was %s" % (now[r], pids[r]))
    lines = st.log_since("interface", marks["interface"])
    check(bool(back_lines(st, lines, restarted)),
          "C: the interface logs, after redis-server's restart, that %s is back" % st.addr,
          lines_detail(lines))


def main():
    t0 = time.monotonic()
    with ErrStack() as st:
        print("info: %s; layer %s" % (st.cli("INFO", "server").splitlines()[1:2], st.url),
              flush=True)
        part_a(st)
        print("info: A took %.1f s" % (time.monotonic() - t0), flush=True)
        part_b(st)
        print("info: A and B took %.1f s" % (time.monotonic() - t0), flush=True)
        part_c(st)
    print("info: the whole test took %.1f s" % (time.monotonic() - t0), flush=True)
    return done()


if __name__ == "__main__":
    sys.exit(main())
