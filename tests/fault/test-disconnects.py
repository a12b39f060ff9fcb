#!/usr/bin/python3
"""Fault test: many WebSockets going away at once must each reach the application as a
websocket.disconnect, so that no ghost group member, no orphan channel session and no stale chat
name claim is left in the layer.

Every scenario runs its own redis-server, laurel-interface and laurel-worker processes
(tests/e2e/harness.py) on free loopback ports, and looks at the layer with redis-cli directly:

1a. 2,000 WebSockets in one group (the test application's /chat/<room>/: group chat-<room> and a
    channel session per connection) whose TCP connections are all aborted at once.
1b. 2,000 users of the chat example (40 rooms of 50: room group, name claim, roster, session) who
    all close at once (close handshake); afterwards a sample of them joins again under the same
    names (no 4001 "username taken").
2. An interface holding 1,000 members of one group gets SIGTERM: it drains (close 1001 to every
   client) and exits 0, and the application hears of every connection.
3. The limit: with --max-pending-disconnects 10 and Redis stopped (SIGSTOP), 60 sockets go away:
   10 disconnects wait and arrive, 50 are dropped — logged once, and `laurel stats` counts them.

The workers get CLEAN_WAIT seconds to catch up after each burst. Two worker processes run the
application (the harness's default): the burst, not a slow application, is what is tested.

Usage: test-disconnects.py BUILD_DIR"""
import asyncio
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
# These tests are about laurel-interface processes: never the development server.
os.environ.pop("LAUREL_E2E_MODE", None)

import websockets  # noqa: E402

from harness import Stack, check, check_eq, done  # noqa: E402
from testlib import chat_join  # noqa: E402
from faults import COUNT_KEYS_LUA, group_counts, raise_nofile, redis, wait_until  # noqa: E402,F401

BATCH = 100          # WebSocket handshakes in flight at once (the listen backlog is 1024)
CLEAN_WAIT = 15.0    # how long the workers get to process the disconnects
LOG_LINES_MAX = 100  # lines a process may log about the whole burst (one per connection: flood)

# Counts the members of every group whose key matches ARGV[1], split by kind: chat's name claims
# (".name."), chat's rosters (".users") and the rest (rooms).



def sessions(st):
    out = redis(st, "EVAL", COUNT_KEYS_LUA, 0, "asgi::session:*")
    return int(out) if out.lstrip("-").isdigit() else -1


def full_count(st, channel="websocket.disconnect"):
    """asgi_redis's channel_full_count of `channel`: how many send calls found it full (a batch of
    sends counts once), only to report."""
    out = redis(st, "GET", "asgi-meta:%s:channel_full_count" % channel)
    return int(out) if out.isdigit() else 0


def log_lines(st):
    """{process name: lines in its log} for the interfaces and workers."""
    n = {}
    for p in st.procs:
        if p.name.startswith(("interface", "worker")):
            try:
                with open(os.path.join(st.dir, p.name + ".log"), errors="replace") as f:
                    n[p.name] = sum(1 for _ in f)
            except OSError:
                n[p.name] = 0
    return n


def check_logs_quiet(st, before, what):
    after = log_lines(st)
    grown = {k: after[k] - before.get(k, 0) for k in after}
    check(all(v <= LOG_LINES_MAX for v in grown.values()),
          "%s: no log is flooded (at most %d new lines each)" % (what, LOG_LINES_MAX), grown)


def poll(fn, want, timeout):
    """Calls fn until it returns want or timeout passes; returns (last value, seconds)."""
    start = time.monotonic()
    while True:
        v = fn()
        if v == want or time.monotonic() - start >= timeout:
            return v, time.monotonic() - start
        time.sleep(0.25)


def testapp_stack(**kw):
    """A Stack running the test application (examples/testapp, built by tests/integration)."""
    st = Stack("chat", **kw)
    st.apps = [[os.path.join(st.build, "tests", "integration", "worker",
                             "liblaurel-testapp.so")]]
    return st


async def open_many(urls):
    """Opens the WebSockets, BATCH handshakes at a time; returns (open sockets, errors)."""
    socks, errors = [], []
    for i in range(0, len(urls), BATCH):
        res = await asyncio.gather(*[
            asyncio.wait_for(websockets.connect(u, ping_interval=None, max_queue=None,
                                                close_timeout=2, open_timeout=10), 15)
            for u in urls[i:i + BATCH]], return_exceptions=True)
        for r in res:
            (errors if isinstance(r, BaseException) else socks).append(r)
    if errors:
        print("  %d handshakes failed, first: %r" % (len(errors), errors[0]))
    return socks, errors



# --- 1a: 2,000 members of one group, TCP aborted at once -------------------------------------

N1 = 2000


async def one_group_abort(st):
    group = "asgi::group:chat-big"
    urls = ["%s/chat/big/?nick=u%04d" % (st.ws_base, i) for i in range(N1)]
    t = time.monotonic()
    socks, errors = await open_many(urls)
    check_eq(len(socks), N1, "1a: WebSockets open")
    members = await wait_until(lambda: int(redis(st, "ZCARD", group) or -1), N1, 20)
    check_eq(members, N1, "1a: members of chat-big before the close")
    check_eq(sessions(st), N1, "1a: channel sessions before the close")
    print("  1a: %d joined in %.1f s" % (members, time.monotonic() - t))

    logs = log_lines(st)
    t = time.monotonic()
    for ws in socks:  # all at once: no close handshake, the interface sees the TCP end
        ws.transport.abort()
    await asyncio.sleep(0)
    state, took = poll(lambda: (int(redis(st, "ZCARD", group) or -1), sessions(st)), (0, 0),
                       CLEAN_WAIT)
    print("  1a: after the abort: %d ghost members, %d orphan sessions (after %.1f s); "
          "sends to websocket.disconnect found it full %d times" % (state[0], state[1], took,
                                                        full_count(st)))
    check_eq(state[0], 0, "1a: ghost members of chat-big %.0f s after all %d aborted"
             % (CLEAN_WAIT, N1))
    check_eq(state[1], 0, "1a: orphan channel sessions %.0f s after all %d aborted"
             % (CLEAN_WAIT, N1))
    check_logs_quiet(st, logs, "1a")


# --- 1b: 2,000 chat users close at once; their names are free again ---------------------------

N2 = 2000
ROOMS = 40  # 50 users a room: every join and leave goes to the room with the whole roster


def chat_url(base, i):
    return "%s/chat/r%02d/ws?username=u%04d" % (base, i % ROOMS, i)


async def chat_rejoin(base, i, timeout=10):
    """Joins as user i again; returns "joined", "4001" or what happened instead."""
    what, ws = await chat_join(chat_url(base, i), "u%04d" % i, timeout)
    if ws:
        await ws.close()
    return what


async def chat_close_all(st):
    urls = [chat_url(st.ws_base, i) for i in range(N2)]
    t = time.monotonic()
    socks, errors = await open_many(urls)
    check_eq(len(socks), N2, "1b: chat WebSockets open")
    counts = await wait_until(lambda: group_counts(st), (N2, N2, N2), 30)
    check_eq(counts, (N2, N2, N2), "1b: (room, claim, roster) members before the close")
    check_eq(sessions(st), N2, "1b: channel sessions before the close")
    print("  1b: %d users in %d rooms in %.1f s" % (counts[0], ROOMS, time.monotonic() - t))

    logs = log_lines(st)
    # All close at once, each with a close handshake (websocket.disconnect code 1000).
    await asyncio.gather(*[ws.close() for ws in socks], return_exceptions=True)
    state, took = poll(lambda: group_counts(st) + (sessions(st),), (0, 0, 0, 0), CLEAN_WAIT)
    print("  1b: after the close: %d ghost room members, %d stale name claims, %d users still "
          "on rosters, %d orphan sessions (after %.1f s); sends to websocket.disconnect "
          "found it full %d times" % (state + (took, full_count(st))))
    check_eq(state[0], 0, "1b: ghost room-group members after all %d closed" % N2)
    check_eq(state[1], 0, "1b: stale name claims after all %d closed" % N2)
    check_eq(state[2], 0, "1b: users left on the rosters after all %d closed" % N2)
    check_eq(state[3], 0, "1b: orphan channel sessions after all %d closed" % N2)
    check_logs_quiet(st, logs, "1b")

    # A sample of 50, from every room: each may take its name again.
    sample = list(range(0, N2, N2 // 50))
    results = await asyncio.gather(*[chat_rejoin(st.ws_base, i) for i in sample])
    tally = {}
    for r in results:
        tally[r] = tally.get(r, 0) + 1
    print("  1b: rejoin under the same name: %r" % tally)
    check_eq(tally.get("4001", 0), 0, "1b: rejoins refused with 4001 (name taken)")
    check_eq(tally.get("joined", 0), len(sample), "1b: sampled users who joined again")


# --- 2: SIGTERM drain of an interface holding 1,000 members ------------------------------------

N3 = 1000


async def sigterm_drain(st):
    group = "asgi::group:chat-drain"
    iface = next(p for p in st.procs if p.name == "interface1")
    urls = ["%s/chat/drain/?nick=u%04d" % (st.ws_base, i) for i in range(N3)]
    socks, errors = await open_many(urls)
    check_eq(len(socks), N3, "2: WebSockets open")
    members = await wait_until(lambda: int(redis(st, "ZCARD", group) or -1), N3, 20)
    check_eq(members, N3, "2: members of chat-drain before SIGTERM")
    check_eq(sessions(st), N3, "2: channel sessions before SIGTERM")

    logs = log_lines(st)
    t = time.monotonic()
    iface.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        rc = await loop.run_in_executor(None, lambda: iface.wait(timeout=25))
    except subprocess.TimeoutExpired:
        rc = "still running after 25 s"
    drained = time.monotonic() - t
    print("  2: the interface exited %s after %.1f s" % (rc, drained))
    check_eq(rc, 0, "2: the interface's exit status after SIGTERM")
    check(drained < 12, "2: the interface exits within --drain-timeout (10 s)", drained)

    await asyncio.gather(*[asyncio.wait_for(ws.wait_closed(), 5) for ws in socks],
                         return_exceptions=True)
    codes = {}
    for ws in socks:
        codes[ws.close_code] = codes.get(ws.close_code, 0) + 1
    check_eq(codes, {1001: N3}, "2: close codes the clients got")

    state, took = poll(lambda: (int(redis(st, "ZCARD", group) or -1), sessions(st)), (0, 0),
                       CLEAN_WAIT)
    print("  2: after the drain: %d ghost members, %d orphan sessions (after %.1f s more); "
          "sends to websocket.disconnect found it full %d times" % (state[0], state[1], took,
                                                        full_count(st)))
    check_eq(state[0], 0, "2: ghost members of chat-drain after the drain")
    check_eq(state[1], 0, "2: orphan channel sessions after the drain")
    check_logs_quiet(st, logs, "2")


# --- 3: more disconnects than the outbox holds, Redis stopped: dropped, logged and counted -------

N4 = 60
OUTBOX = 10


async def outbox_overflow(st):
    group = "asgi::group:chat-over"
    urls = ["%s/chat/over/?nick=u%02d" % (st.ws_base, i) for i in range(N4)]
    socks, errors = await open_many(urls)
    check_eq(len(socks), N4, "3: WebSockets open")
    members = await wait_until(lambda: int(redis(st, "ZCARD", group) or -1), N4, 20)
    check_eq(members, N4, "3: members of chat-over before the close")
    logs = log_lines(st)
    server = next(p for p in st.procs if p.name == "redis")
    # Redis stopped (not closed): the interface's sends wait unanswered, so the outbox fills.
    server.send_signal(signal.SIGSTOP)
    try:
        for ws in socks:
            ws.transport.abort()
        await asyncio.sleep(1.5)
    finally:
        server.send_signal(signal.SIGCONT)
    dropped = N4 - OUTBOX
    # The 10 that waited reach the application; the 50 dropped stay members (the documented
    # loss), and are counted layer-wide.
    state = await wait_until(lambda: (int(redis(st, "ZCARD", group) or -1),
                                      st.tool("stats")[1].count(
                                          "control_dropped %d\n" % dropped)), (dropped, 1), 15)
    print("  3: after the overflow: %d members left, laurel stats: %s" % (
        state[0], " ".join(st.tool("stats")[1].split("\n")[:3])))
    check_eq(state[0], dropped, "3: members left: exactly the disconnects dropped")
    check_eq(state[1], 1, "3: laurel stats counts control_dropped %d" % dropped)
    with open(os.path.join(st.dir, "interface1.log"), errors="replace") as f:
        said = [ln for ln in f if "outbox full" in ln]
    print("  3: the interface said: %s" % (said[0].strip() if said else "(nothing)"))
    check(1 <= len(said) <= 2, "3: the interface logs the overflow once (rate-limited)",
          len(said))
    check_logs_quiet(st, logs, "3")


def scenario(title, make_stack, body):
    print("--- " + title, flush=True)
    t = time.monotonic()
    with make_stack() as st:
        asyncio.run(body(st))
    print("  (%s: %.1f s)" % (title.split(":")[0], time.monotonic() - t), flush=True)


if __name__ == "__main__":
    soft, hard = raise_nofile()
    check(soft >= 2 * N2 + 200, "RLIMIT_NOFILE allows %d sockets (soft %d, hard %d)"
          % (N2, soft, hard))
    scenario("1a: 2,000 WebSocket members of one group close at once (TCP aborted)",
             lambda: testapp_stack(workers=2, timeout=45), one_group_abort)
    # The chat example's disconnect consumer sends to its own internal channel chat.roster
    # (capacity 100), read only by the same workers: they must not wait on it (they carry).
    scenario("1b: 2,000 chat users close at once, then take their names again",
             lambda: Stack("chat", workers=2, timeout=50), chat_close_all)
    scenario("2: SIGTERM drain of an interface with 1,000 sockets",
             lambda: testapp_stack(workers=2, timeout=45), sigterm_drain)
    st3 = testapp_stack(workers=2, timeout=40)
    st3.interface_args = ["--max-pending-disconnects", str(OUTBOX)]
    scenario("3: %d disconnects while Redis is stopped, %d may wait" % (N4, OUTBOX),
             lambda: st3, outbox_overflow)
    sys.exit(done())
