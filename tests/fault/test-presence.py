#!/usr/bin/python3
"""Fault test: presence survives an interface that dies without a word.

300 users of the chat example (6 rooms of 50) are connected to interface A; A is killed with
SIGKILL, so no websocket.disconnect is ever sent for them. An interface is known to be live by its
announcement in asgi::interfaces, renewed every ttl/3 and dropped after at most ttl (30 s,
docs/layer.md "How an interface is known to be live"). So, counting from the kill:

- within the liveness TTL (30 s, plus a little for the workers) every user can join again under
  the same name through interface B: none is refused for good with 4001 "username taken" (an
  attempt refused while A may still be live is tried again, every second);
- after at most ~35 s no group of the application (rooms, name claims, rosters) holds a member of
  A's reply channels, counted in Redis;
- in the end the rooms, claims and rosters hold the 300 users once each, all on B.

redis-server, two laurel-interface and two laurel-worker processes (tests/e2e/harness.py) on free
loopback ports; the layer is looked at with redis-cli directly.

Usage: test-presence.py BUILD_DIR"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
# These tests are about laurel-interface processes: never the development server.
os.environ.pop("LAUREL_E2E_MODE", None)

from harness import Stack, check, check_eq, done  # noqa: E402
from testlib import chat_join  # noqa: E402
from faults import COUNT_KEYS_LUA, group_counts, raise_nofile, redis, wait_until  # noqa: E402,F401

N = 300
ROOMS = 6            # 50 users a room
BATCH = 100          # WebSocket handshakes in flight at once
TTL = 30             # the interfaces' announcement TTL (the default)
REJOIN_BY = TTL + 3  # seconds after the kill by which every user is back
GHOSTS_BY = 36       # seconds after the kill by which no group holds a member of the dead one
RETRY = 1.0          # seconds between two attempts of a refused user

# (room members, claim members, roster members) over every group matching ARGV[1]; with ARGV[2],
# only the members that start with it.

MEMBERS_LUA = """
local out, cur = {}, "0"
repeat
  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do
    for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do out[#out + 1] = m end
  end
until cur == "0"
return out
"""



def room_members(st):
    """The members of the room groups (not the claims, not the rosters)."""
    out = redis(st, "EVAL", MEMBERS_LUA, 0, "asgi::group:chat-r?").split()
    return out


def count_keys(st, pattern):
    out = redis(st, "EVAL", COUNT_KEYS_LUA, 0, pattern)
    return int(out) if out.isdigit() else -1


def chat_url(base, i):
    return "%s/chat/r%d/ws?username=u%03d" % (base, i % ROOMS, i)


async def join(base, i, timeout=10):
    """Joins as user i; returns ("joined", ws) or (what happened instead, None)."""
    return await chat_join(chat_url(base, i), "u%03d" % i, timeout, max_queue=None)


async def join_many(base, users):
    """Joins users, BATCH at a time; returns ({user: ws} joined, {outcome: count} of the rest)."""
    joined, tally = {}, {}
    for k in range(0, len(users), BATCH):
        part = users[k:k + BATCH]
        for i, (what, ws) in zip(part, await asyncio.gather(*[join(base, i) for i in part])):
            if ws:
                joined[i] = ws
            else:
                tally[what] = tally.get(what, 0) + 1
    return joined, tally



async def main(st):
    a_base, b_base = st.ws_bases[0], st.ws_bases[1]
    a = next(p for p in st.procs if p.name == "interface1")

    on_a, tally = await join_many(a_base, list(range(N)))
    check_eq(len(on_a), N, "chat users joined through interface A")
    if tally:
        print("  the others: %r" % tally)
    counts = await wait_until(lambda: group_counts(st), (N, N, N), 15)
    check_eq(counts, (N, N, N), "(room, claim, roster) members before the kill")

    prefixes = {m[:m.index("!") + 1] for m in room_members(st) if "!" in m}
    check_eq(len(prefixes), 1, "the rooms' members are all on one interface (A)")
    prefix_a = prefixes.pop() if len(prefixes) == 1 else None
    live = redis(st, "ZRANGE", "asgi::interfaces", 0, -1).split()
    check(prefix_a in live and len(live) == 2, "A and B are announced in asgi::interfaces",
          live)
    if not prefix_a:
        return

    # SIGKILL: A says nothing more, neither websocket.disconnect nor the withdrawal.
    score = redis(st, "ZSCORE", "asgi::interfaces", prefix_a)
    a.kill()
    a.wait()
    killed = time.monotonic()
    expires = float(score) - time.time() if score else float("nan")
    print("  A (%s) killed; its announcement runs out %.1f s later" % (prefix_a, expires))
    # The harness would take A's -9 for a crash and print every log; it is stopped on purpose.
    st.procs.remove(a)
    for ws in on_a.values():
        ws.transport.abort()

    # Every user back through B under the same name, within the TTL.
    on_b, waiting, rounds, refused = {}, list(range(N)), 0, {}
    while waiting and time.monotonic() - killed < REJOIN_BY:
        rounds += 1
        joined, tally = await join_many(b_base, waiting)
        on_b.update(joined)
        for what, n in tally.items():
            refused[what] = refused.get(what, 0) + n
        waiting = [i for i in waiting if i not in joined]
        if waiting:
            await asyncio.sleep(max(0.0, min(RETRY, REJOIN_BY - (time.monotonic() - killed))))
    took = time.monotonic() - killed
    print("  rejoined through B: %d of %d after %.1f s, %d rounds; refused attempts on the "
          "way: %r" % (len(on_b), N, took, rounds, refused))
    check_eq(len(on_b), N, "users back under their names through B within %d s of the kill"
             % REJOIN_BY)
    check_eq(len(waiting), 0, "users still refused (4001 name taken) %d s after the kill"
             % REJOIN_BY)

    # No group keeps a member of A.
    left = group_counts(st, prefix=prefix_a)
    while left != (0, 0, 0) and time.monotonic() - killed < GHOSTS_BY:
        await asyncio.sleep(0.5)
        left = group_counts(st, prefix=prefix_a)
    print("  %.1f s after the kill: (room, claim, roster) members of A: %r; A's orphan "
          "sessions: %d" % (time.monotonic() - killed, left,
                            count_keys(st, "asgi::session:%s*" % prefix_a)))
    check_eq(left, (0, 0, 0), "(room, claim, roster) members of dead A %d s after the kill"
             % GHOSTS_BY)
    print("  A still announced as live: %s" % (prefix_a in redis(
        st, "ZRANGEBYSCORE", "asgi::interfaces", time.time(), "+inf").split()))

    # The rooms hold the users once each, now on B; so do the claims and the rosters.
    check_eq(group_counts(st), (N, N, N),
             "(room, claim, roster) members in the end (each user once, on B)")
    for ws in on_b.values():
        ws.transport.abort()


if __name__ == "__main__":
    soft, hard = raise_nofile()
    check(soft >= 2 * N + 200, "RLIMIT_NOFILE allows %d sockets (soft %d, hard %d)"
          % (N, soft, hard))
    t = time.monotonic()
    with Stack("chat", workers=2, interfaces=2, timeout=90) as st:
        asyncio.run(main(st))
    print("  (%.1f s)" % (time.monotonic() - t))
    sys.exit(done())
