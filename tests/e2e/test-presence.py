#!/usr/bin/python3
"""The presence example (examples/presence) as an application developer builds it: `meson install`
into a staging directory, then presence.c alone compiled out of the tree with nothing but
`pkg-config --cflags --libs laurel` (the installed laurel.pc) — so it uses the public headers
only. That .so then runs in laurel-worker processes behind laurel-interface, on a real
redis-server, driven by python3-websockets clients: the count of each room reaches every member
on each join and leave (also when a client vanishes without a close), rooms stay apart, the
recount settles, max-per-room refuses one too many (403), and nothing is left in Redis after.
The page is checked in headless Chromium when it is available (test-browser has the same
prerequisites).

Usage: test-presence.py BUILD_DIR"""
import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, build_dir, check, check_eq, done, http, run_node  # noqa: E402

os.environ.pop("LAUREL_E2E_MODE", None)  # the stack's own workers run the out-of-tree .so
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "examples", "presence", "presence.c")
TIMEOUT = 5


def build_out_of_tree(work):
    """meson install to work/stage, then cc with the installed pkg-config file only. Returns
    the .so path, or None."""
    stage = os.path.join(work, "stage")
    r = subprocess.run(["meson", "install", "-C", build_dir(), "--destdir", stage,
                        "--no-rebuild", "--quiet"], capture_output=True, text=True, timeout=120)
    if not check_eq(r.returncode, 0, "meson install --destdir"):
        print(r.stdout[-2000:], r.stderr[-2000:])
        return None
    pcs = glob.glob(os.path.join(stage, "**", "pkgconfig", "laurel.pc"), recursive=True)
    if not check_eq(len(pcs), 1, "one laurel.pc installed"):
        return None
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
               PKG_CONFIG_SYSROOT_DIR=stage, PKG_CONFIG_LIBDIR="")
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "laurel"], capture_output=True,
                       text=True, env=env)
    flags = r.stdout.split()
    check(r.returncode == 0 and flags and all(f.startswith("-I" + stage) for f in flags),
          "pkg-config --cflags --libs laurel: the staged headers, no library", (r.stdout,
                                                                                 r.stderr))
    headers = os.path.join(flags[0][2:], "laurel") if flags else ""
    check_eq(sorted(os.listdir(headers)) if os.path.isdir(headers) else [],
             ["consumer.h", "layer.h", "message.h", "routing.h"], "the installed headers")
    # Alone in a directory of its own: nothing of the source tree is within reach.
    src = os.path.join(work, "app", "presence.c")
    os.makedirs(os.path.dirname(src))
    shutil.copy(SOURCE, src)
    out = os.path.join(work, "app", "libpresence.so")
    cmd = ["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-shared",
           "-fPIC", "-fvisibility=hidden"] + flags + ["-o", out, src]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(src))
    if not check_eq(r.returncode, 0, "cc $(pkg-config --cflags --libs laurel) presence.c"):
        print(" ".join(cmd), r.stderr[-3000:])
        return None
    # The installed laurel-worker loads it and lists its options.
    worker = glob.glob(os.path.join(stage, "**", "bin", "laurel-worker"), recursive=True)
    r = subprocess.run(worker[:1] + ["--app", out, "--help"], capture_output=True, text=True)
    check(r.returncode == 0 and "max-per-room" in r.stdout and "settle-ms" in r.stdout,
          "the installed laurel-worker --app libpresence.so --help lists its options",
          r.stdout[-600:])
    return out


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def event(ws):
    """The next join or leave (recounts skipped)."""
    while True:
        f = await recv(ws)
        if f.get("event") != "settle":
            return f


async def settled(ws, want, seconds=3.0):
    """Reads until a recount says want (what a page would end up showing)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    last = None
    try:
        while loop.time() < end:
            f = json.loads(await asyncio.wait_for(ws.recv(), end - loop.time()))
            last = f
            if f.get("event") == "settle" and f.get("count") == want:
                return True
    except (asyncio.TimeoutError, websockets.ConnectionClosed):
        pass
    print("  last frame: %s" % last)
    return False


async def silent_events(ws, seconds=0.6):
    """True if only recounts (or nothing) arrive on ws within seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end:
            f = json.loads(await asyncio.wait_for(ws.recv(), end - loop.time()))
            if f.get("event") != "settle":
                print("  unexpected frame: %s" % f)
                return False
    except asyncio.TimeoutError:
        pass
    return True


def frame(room, count, ev):
    return {"type": "presence", "room": room, "count": count, "event": ev}


def redis_cli(st, *args):
    return subprocess.run(["redis-cli", "-p", str(st.redis_port)] + list(args),
                          capture_output=True, text=True).stdout.split()


async def main(st):
    url = st.ws_bases[0] + "/presence/%s/ws"
    url2 = st.ws_bases[-1] + "/presence/%s/ws"

    a1 = await websockets.connect(url % "r1")
    check_eq(await event(a1), frame("r1", 1, "join"), "the first in r1 sees 1")
    a2 = await websockets.connect(url2 % "r1")  # another interface: nothing shared but Redis
    check_eq(await event(a2), frame("r1", 2, "join"), "the second sees 2")
    check_eq(await event(a1), frame("r1", 2, "join"), "the first is told 2")
    b1 = await websockets.connect(url % "r2")
    check_eq(await event(b1), frame("r2", 1, "join"), "another room counts on its own")
    status, _, body = http("GET", st.base + "/presence/r1/count")
    check_eq((status, json.loads(body)), (200, {"room": "r1", "count": 2}),
             "GET /presence/r1/count")

    a3 = await websockets.connect(url % "r1")
    check_eq(await event(a3), frame("r1", 3, "join"), "a third joins r1")
    for ws, who in ((a1, "first"), (a2, "second")):
        check_eq(await event(ws), frame("r1", 3, "join"), "the %s is told 3" % who)
    await a3.close()
    for ws, who in ((a1, "first"), (a2, "second")):
        check_eq(await event(ws), frame("r1", 2, "leave"), "a close: the %s is told 2" % who)

    # A client that vanishes without a close frame (its TCP connection just ends).
    a4 = await websockets.connect(url % "r1")
    await event(a4)
    await event(a1)
    await event(a2)
    a4.transport.abort()
    check_eq(await event(a1), frame("r1", 2, "leave"), "a client gone without a close is counted out")
    check_eq(await event(a2), frame("r1", 2, "leave"), "... for every member")
    check(await settled(a1, 2), "the recount settles on 2")
    check(await settled(b1, 1), "r2's recount: 1")

    # max-per-room=3: the fourth connection of a room is refused.
    c = [await websockets.connect(url % "full") for _ in range(3)]
    check(await settled(c[1], 3), "a full room of three")
    try:
        extra = await websockets.connect(url % "full")
        await extra.close()
        check(False, "a fourth connection to a room of three is refused")
    except websockets.InvalidStatusCode as e:
        check_eq(e.status_code, 403, "a fourth connection to a room of three: HTTP 403")
    check(await settled(c[0], 3), "the full room still counts 3 (the refused one left no trace)")
    check(await silent_events(c[1]), "and its members were told of no join or leave")
    await c[2].close()
    await settled(c[0], 2)
    d = await websockets.connect(url % "full")
    check_eq((await event(d))["count"], 3, "after one left, a new one is let in")
    for ws in c[:2] + [d, a1, a2, b1]:
        await ws.close()
    # Everything gone from Redis once the last leave was handled.
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while loop.time() < end:
        left = redis_cli(st, "--scan", "--pattern", "asgi::group:presence.*")
        if not left:
            break
        await asyncio.sleep(0.1)
    check_eq(left, [], "no presence group left in Redis")
    check_eq(redis_cli(st, "--scan", "--pattern", "asgi::session:*"), [], "no session left")


def browser(st):
    if not (os.access("/usr/bin/chromium", os.X_OK)
            and os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core"))):
        print("(no Chromium or playwright-core: the page is not checked in a browser)")
        return
    run_node(os.path.join(HERE, "browser-presence.mjs"), [st.base], 45, HERE)


if __name__ == "__main__":
    work = tempfile.mkdtemp(prefix="laurel-presence-")
    try:
        so = build_out_of_tree(work)
        if so:
            st = Stack([(so, ["--app-option", "max-per-room=3", "--app-option",
                              "settle-ms=200"])], workers=2, interfaces=2, timeout=100)
            with st:
                asyncio.run(main(st))
                browser(st)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(done())
