#!/usr/bin/python3
"""Recovery after a reconnect (docs/recovery.md) with a real client (python3-websockets), a real
redis-server, laurel-interface and a laurel-worker pool running the test application's
/recover/ROOM/ consumer (laurel_group_recover on group "hist-ROOM"), and the laurel tool sending to
the group (--group-history 'hist-*=100/600').

- A client joins, gets messages 1..5 in their envelopes, goes away; 50 messages are sent; it
  comes back with (epoch, 5) and gets exactly 6..55, then the status {recovered: true, offset:
  55}, then the live ones, in order.
- The seam: 300 messages are sent without a pause while a client reconnects in the middle of
  them; it sees every offset after its own exactly once, in order, around the status frame.
- Lost: another epoch (the history's keys deleted) and an offset trimmed away (more than 100
  missed) each give {recovered: false} with the current epoch and offset, then live messages.
- A second interface: a client that comes back on another interface recovers the same way.
- The interface's hold, driven by hand: live messages between the hold and the batch wait and
  follow the status in offset order without the duplicate; a hold with no batch ends at the next
  live message after 10 s with {recovered: false}; past 4 MiB held, 1013.
- Afterwards nothing is left behind in Redis: the group has no member, no queue holds anything.

Usage: test-recovery.py BUILD_DIR"""
import asyncio
import json
import os
import subprocess
import sys
import threading

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, build_dir, check, check_eq, done  # noqa: E402

RULE = "hist-*=100/600"
TIMEOUT = 10


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


def send(st, room, text):
    rc, out = st.tool("--group-history", RULE, "group-send", "hist-" + room,
                      json.dumps({"text": text}))
    lines = out.split("\n")
    return rc, lines[1].split() if len(lines) > 1 and lines[1] else []


async def until_status(ws, limit=1000):
    """The frames up to and including the status frame: (envelopes, status)."""
    got = []
    for _ in range(limit):
        f = await recv(ws)
        if "recovered" in f:
            return got, f
        got.append(f)
    return got, None


async def main(st):
    url = st.ws_base + "/recover/%s/"
    # A client with nothing seen only joins.
    a = await websockets.connect(url % "r1")
    await asyncio.sleep(0.3)
    epoch = None
    for i in range(1, 6):
        rc, pos = send(st, "r1", "m%d" % i)
        check_eq(rc, 0, "group-send %d" % i)
        epoch = epoch or pos[1]
    for i in range(1, 6):
        check_eq(await recv(a), {"group": "hist-r1", "epoch": epoch, "offset": i,
                                 "text": "m%d" % i}, "live message %d in its envelope" % i)
    await a.close()
    await asyncio.sleep(0.3)

    # Away: 50 messages. Back with (epoch, 5): exactly those, then the status, then live.
    for i in range(6, 56):
        send(st, "r1", "m%d" % i)
    a = await websockets.connect(url % "r1" + "?epoch=%s&offset=5" % epoch)
    got, status = await until_status(a)
    check_eq([f["offset"] for f in got], list(range(6, 56)), "the 50 missed, in order")
    check(all(f["text"] == "m%d" % f["offset"] and f["epoch"] == epoch for f in got),
          "each with its own text and the epoch")
    check_eq(status, {"group": "hist-r1", "epoch": epoch, "offset": 55, "recovered": True},
             "then the status: recovered up to 55")
    send(st, "r1", "m56")
    check_eq((await recv(a))["offset"], 56, "then the live ones")

    # The seam: messages flow while a client comes back.
    b = await websockets.connect(url % "r1")
    await asyncio.sleep(0.3)
    await b.close()
    stop = []

    def flood():
        for i in range(300):
            send(st, "r1", "flood%d" % i)
        stop.append(True)
    t = threading.Thread(target=flood)
    t.start()
    await asyncio.sleep(0.6)  # some of the flood is sent while b is away
    b = await websockets.connect(url % "r1" + "?epoch=%s&offset=56" % epoch)
    got, status = await until_status(b)
    check(status is not None and status["recovered"], "the seam: recovered", status)
    seen = [f["offset"] for f in got]
    top = status["offset"] if status else 0
    while True:
        try:
            f = json.loads(await asyncio.wait_for(b.recv(), 3))
        except asyncio.TimeoutError:
            break
        seen.append(f["offset"])
    t.join()
    check_eq(seen, list(range(57, 57 + 300)),
             "the seam: every offset after 56 exactly once and in order (%d recovered, %d "
             "live)" % (len(got), 300 - len(got)))
    check(len(got) > 0 and top < 356, "the reconnect fell in the middle of the flood", top)
    await b.close()
    await a.close()

    # Lost, another epoch: the history's keys are gone.
    subprocess.run(["redis-cli", "-p", str(st.redis_port), "DEL", "asgi::history:hist-r1",
                    "asgi::history-log:hist-r1"], capture_output=True, check=True)
    rc, pos = send(st, "r1", "new epoch")
    new_epoch = pos[1]
    check(new_epoch != epoch and pos[3] == "1", "a new epoch starts at offset 1", pos)
    c = await websockets.connect(url % "r1" + "?epoch=%s&offset=356" % epoch)
    got, status = await until_status(c)
    check_eq((got, status), ([], {"group": "hist-r1", "epoch": new_epoch, "offset": 1,
                                  "recovered": False}),
             "another epoch: recovered false, the current epoch and offset")
    send(st, "r1", "after")
    check_eq(await recv(c), {"group": "hist-r1", "epoch": new_epoch, "offset": 2,
                             "text": "after"}, "then the live ones")
    await c.close()

    # Lost, trimmed: 150 missed, 100 kept.
    for i in range(150):
        send(st, "r1", "t%d" % i)
    d = await websockets.connect(url % "r1" + "?epoch=%s&offset=2" % new_epoch)
    got, status = await until_status(d)
    check_eq((len(got), status), (0, {"group": "hist-r1", "epoch": new_epoch, "offset": 152,
                                      "recovered": False}),
             "trimmed away: recovered false")
    await d.close()

    # Back through the other interface.
    e = await websockets.connect(url % "r1" + "?epoch=%s&offset=150" % new_epoch)
    await e.close()
    send(st, "r1", "x153")
    e = await websockets.connect(st.ws_bases[1] + "/recover/r1/?epoch=%s&offset=152" % new_epoch)
    got, status = await until_status(e)
    check_eq(([f["text"] for f in got], status and status["recovered"]), (["x153"], True),
             "another interface recovers the same way")
    await e.close()

    # The interface's hold, driven by hand (the layer's messages written with `laurel send`):
    # live messages that come between the hold and the batch wait, out of order and with a
    # duplicate of a recovered one; then they follow the status in offset order, once.
    f = await websockets.connect(url % "r2")
    chan = None
    for _ in range(50):
        rc, out = st.tool("group-members", "hist-r2")
        if out.split()[:1] == ["1"]:
            chan = out.split()[1]
            break
        await asyncio.sleep(0.1)
    check(chan and chan.startswith("laurel.response."), "the connection's reply channel", chan)

    def to_conn(msg):
        rc, _ = st.tool("send", chan, json.dumps(msg))
        return rc

    hold = {"__laurel_recovery__": {"group": "hist-r2", "hold": True}}
    check_eq(to_conn(hold), 0, "a hold sent")
    for o in (12, 11, 10, 13):
        to_conn({"text": "L%d" % o, "__laurel_history__": ["hist-r2", "e1", o]})
    try:
        early = await asyncio.wait_for(f.recv(), 0.5)
    except asyncio.TimeoutError:
        early = None
    check_eq(early, None, "nothing reaches the client during the hold")
    to_conn({"__laurel_recovery__": {"group": "hist-r2", "epoch": "e1", "offset": 10,
                                     "recovered": True, "final": True},
             "messages": [[9, "R9"], [10, "R10"]]})
    frames = [await recv(f) for _ in range(6)]
    check_eq([(x["offset"], x.get("text", x.get("recovered"))) for x in frames],
             [(9, "R9"), (10, "R10"), (10, True), (11, "L11"), (12, "L12"), (13, "L13")],
             "recovered, the status, then the held live ones newer than 10, in order, once")
    # A hold whose batch never comes ends at the next live message after 10 s.
    check_eq(to_conn(hold), 0, "a hold that no batch follows")
    await asyncio.sleep(10.5)
    to_conn({"text": "late", "__laurel_history__": ["hist-r2", "e1", 14]})
    frames = [await recv(f) for _ in range(2)]
    check_eq(frames, [{"group": "hist-r2", "epoch": "", "offset": 0, "recovered": False},
                      {"group": "hist-r2", "epoch": "e1", "offset": 14, "text": "late"}],
             "an abandoned hold: recovered false, then the message")
    # A hold keeps at most 4 MiB: past it the connection is closed with 1013 (try again).
    check_eq(to_conn(hold), 0, "a hold for the limit")
    big = "x" * (900 * 1024)
    for o in range(15, 21):
        r = subprocess.run([os.path.join(st.build, "tool", "laurel"), "--layer", st.layer, "send",
                            chan, "-"], input=json.dumps(
                                {"text": big, "__laurel_history__": ["hist-r2", "e1", o]}),
                           capture_output=True, text=True)
        check_eq(r.returncode, 0, "a 900 KiB live message during the hold (%d)" % o)
    try:
        while True:
            await asyncio.wait_for(f.recv(), TIMEOUT)
    except websockets.ConnectionClosed as e:
        check_eq(e.rcvd.code if e.rcvd else None, 1013, "past 4 MiB held: closed with 1013")
    await f.close()

    # Nothing left behind.
    out = ""
    for _ in range(50):
        rc, out = st.tool("group-members", "hist-r1")
        if out.split() == ["0"]:
            break
        await asyncio.sleep(0.1)
    check_eq(out.split(), ["0"], "the group has no member left")
    r = subprocess.run(["redis-cli", "-p", str(st.redis_port), "--scan", "--pattern",
                        "asgi:laurel.response*"], capture_output=True, text=True)
    check_eq(r.stdout.split(), [], "no interface queue holds anything")


if __name__ == "__main__":
    app = os.path.join(build_dir(), "tests", "integration", "worker", "liblaurel-testapp.so")
    with Stack([(app, ["--group-history", RULE])], workers=2, interfaces=2, timeout=100) as st:
        asyncio.run(main(st))
    sys.exit(done())
