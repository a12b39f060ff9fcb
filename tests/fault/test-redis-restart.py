#!/usr/bin/python3
"""Fault test: Redis is killed and restarted empty under 500 WebSockets in a group.

The groups and sessions the sockets had are gone with Redis's data, so a socket left open would be
deaf (no broadcasts) and its frames would fail ("no session"). The interface notices that the
server came back without its data (docs/layer.md) and closes its WebSockets with 1012 (service
restart), so that clients reconnect and join again. Checked: every one of the 500 sockets is closed
with 1012 (none stays open and deaf), the interface said so once, and new connections work again:
they join the group and a broadcast reaches all of them.

The test application (examples/testapp: /chat/ROOM/?nick=N joins group chat-ROOM and keeps a
channel session) in one laurel-interface and two laurel-worker processes, on a redis-server with
no persistence on a free loopback port.

Usage: test-redis-restart.py BUILD_DIR"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
os.environ.pop("LAUREL_E2E_MODE", None)  # real interface processes

import websockets  # noqa: E402

from harness import Stack, check, check_eq, done, wait_port  # noqa: E402
from faults import raise_nofile, redis, wait_until  # noqa: E402

N = 500
AGAIN = 50
BATCH = 100


def testapp_stack(**kw):
    st = Stack("chat", **kw)
    st.apps = [[os.path.join(st.build, "tests", "integration", "worker", "liblaurel-testapp.so")]]
    return st


def members(st):
    out = redis(st, "ZCARD", "asgi::group:chat-big")
    return int(out) if out.isdigit() else -1


async def open_many(st, n, tag):
    urls = ["%s/chat/big/?nick=%s%04d" % (st.ws_base, tag, i) for i in range(n)]
    socks = []
    for i in range(0, n, BATCH):
        socks += await asyncio.gather(*[
            websockets.connect(u, ping_interval=None, max_queue=None, close_timeout=2,
                               open_timeout=10) for u in urls[i:i + BATCH]])
    return socks



async def main(st):
    socks = await open_many(st, N, "u")
    check_eq(await wait_until(lambda: members(st), N, 15), N, "members of chat-big before")

    # kill -9 and restart empty on the same port, as a supervisor would.
    old = st.procs[0]
    old.kill()
    old.wait()
    st.procs.remove(old)
    redis_argv = ["redis-server", "--port", str(st.redis_port), "--bind", "127.0.0.1", "--save",
                  "", "--appendonly", "no", "--dir", st.dir]
    st.procs.insert(0, st._start("redis2", redis_argv))
    check(wait_port(st.redis_port), "redis-server restarted empty")
    t = time.monotonic()

    async def closed_code(ws):
        try:
            await asyncio.wait_for(ws.wait_closed(), 15)
        except asyncio.TimeoutError:
            return "still open"
        return ws.close_code
    codes = await asyncio.gather(*[closed_code(ws) for ws in socks])
    seen = {}
    for c in codes:
        seen[c] = seen.get(c, 0) + 1
    print("  close codes %r, %.1f s after the restart" % (seen, time.monotonic() - t))
    check_eq(seen, {1012: N}, "every socket closed with 1012 after Redis came back empty")

    log = open(os.path.join(st.dir, "interface1.log"), errors="replace").read()
    check_eq(log.count("closing %d WebSockets with 1012" % N), 1,
             "the interface said once that it closed them")
    check("came back without its data" in log, "the interface named the lost data")

    # Clients reconnect: they join again, and a broadcast reaches every one of them.
    again = await open_many(st, AGAIN, "v")
    check_eq(await wait_until(lambda: members(st), AGAIN, 15), AGAIN,
             "members of chat-big after reconnecting")
    await again[0].send("hello")
    got = await asyncio.gather(*[asyncio.wait_for(ws.recv(), 10) for ws in again],
                               return_exceptions=True)
    check_eq(sum(1 for g in got if g == "v0000: hello"), AGAIN,
             "a broadcast after the restart reaches every new member")
    await asyncio.gather(*[ws.close() for ws in again])
    check_eq(await wait_until(lambda: members(st), 0, 15), 0, "no member left after they close")
    out = redis(st, "EVAL", "return #redis.call('KEYS', 'asgi::session:*')", 0)
    check_eq(out, "0", "no session left")


if __name__ == "__main__":
    raise_nofile()
    with testapp_stack(workers=2, timeout=90) as st:
        asyncio.run(main(st))
    sys.exit(done())
