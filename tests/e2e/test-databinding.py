#!/usr/bin/python3
"""The live data binding example end to end: {stream, payload} frames on /demultiplex/<room>/
change rows of a real SQLite file shared by two laurel-worker processes, and every change reaches
the room and no other.

Usage: test-databinding.py BUILD_DIR"""
import asyncio
import json
import sqlite3
import sys

import websockets

from harness import Stack, check, check_eq, done
from testlib import recv_json, silent  # tests/lib, on the path harness sets


def frame(action, pk=None, **data):
    payload = {"action": action}
    if pk is not None:
        payload["pk"] = pk
    if data:
        payload["data"] = data
    return json.dumps({"stream": "messages", "payload": payload})


def rows(db, sql="SELECT pk, room, author, text FROM messages ORDER BY pk", args=()):
    with sqlite3.connect(db, timeout=5) as c:
        return [tuple(r) for r in c.execute(sql, args)]


def strip(f):
    """The frame without the creation time, which the test cannot know."""
    f = json.loads(json.dumps(f))
    f.get("payload", {}).get("data", {}).pop("created", None)
    return f


async def main(st):
    url = st.ws_base + "/demultiplex/%s/"
    a = await websockets.connect(url % "r1")
    b = await websockets.connect(url % "r1")
    other = await websockets.connect(url % "r2")
    # Accepted means joined: the group is joined before the connection is accepted.

    # create: seen by both clients of r1, with the row in SQLite.
    await a.send(frame("create", text="first", author="ann"))
    want = {"stream": "messages",
            "payload": {"action": "create", "pk": 1,
                        "data": {"room": "r1", "author": "ann", "text": "first"},
                        "model": "examples.message"}}
    fa, fb = await recv_json(a), await recv_json(b)
    check_eq(strip(fa), want, "creator sees the create")
    check_eq(strip(fb), want, "the other client of r1 sees the create")
    check(isinstance(fa["payload"]["data"].get("created"), str), "a row has its creation time")
    check_eq(rows(st.db), [(1, "r1", "ann", "first")], "the row is in SQLite")
    check_eq(rows(st.db, "PRAGMA journal_mode"), [("wal",)], "the database is in WAL mode")

    # update by the other client.
    await b.send(frame("update", 1, text="edited"))
    want["payload"]["action"] = "update"
    want["payload"]["data"]["text"] = "edited"
    check_eq(strip(await recv_json(a)), want, "the update reaches the first client")
    check_eq(strip(await recv_json(b)), want, "the updater sees the update")
    check_eq(rows(st.db), [(1, "r1", "ann", "edited")], "the update is in SQLite")

    # A client of r2 neither sees r1's rows nor can change them.
    check(await silent(other), "r2 saw nothing of r1's changes")
    await other.send(frame("update", 1, text="hijack"))
    f = await recv_json(other)
    check_eq(f, {"stream": "messages",
                 "payload": {"action": "update", "error": "no such pk in this room"}},
             "r2 cannot update r1's row")
    await other.send(frame("create", text="in r2"))
    f = await recv_json(other)
    check_eq((f["payload"]["action"], f["payload"]["pk"], f["payload"]["data"]["room"]),
             ("create", 2, "r2"), "r2 creates its own row")
    check(await silent(a), "r1 does not see r2's create")

    # delete: the last state of the row, and the row is gone.
    await a.send(frame("delete", 1))
    want["payload"]["action"] = "delete"
    check_eq(strip(await recv_json(b)), want, "the delete reaches the other client")
    check_eq(strip(await recv_json(a)), want, "the deleter sees the delete")
    check_eq(rows(st.db), [(2, "r2", "", "in r2")], "only r2's row is left in SQLite")

    # Bad frames: an error frame to the sender, never a crash, and the connection goes on.
    bad = [
        ("not json", None, None),
        ('{"stream": "messages"}', None, None),
        ('["stream", "payload"]', None, None),
        ('{"stream": "nope", "payload": {}}', "nope", None),
        (json.dumps({"stream": "messages", "payload": {}}), "messages", None),
        (frame("explode"), "messages", "explode"),
        (frame("create"), "messages", "create"),
        (frame("create", text=""), "messages", "create"),
        (frame("create", text="x" * 2001), "messages", "create"),
        (frame("create", text=5), "messages", "create"),
        (frame("create", text="x", room="r2"), "messages", "create"),
        (frame("update", 2), "messages", "update"),
        (frame("update", "2", text="x"), "messages", "update"),
        (frame("update", -1, text="x"), "messages", "update"),
        (frame("delete"), "messages", "delete"),
        (frame("delete", 99), "messages", "delete"),
        (frame("delete", 1), "messages", "delete"),
    ]
    for text, stream, action in bad:
        await a.send(text)
        f = await recv_json(a)
        p = f.get("payload", {})
        check(f.get("stream") == stream and p.get("action") == action and
              isinstance(p.get("error"), str) and len(p) == 2,
              "error frame for %s" % text[:60], f)
    await a.send(b"\x00binary")
    f = await recv_json(a)
    check_eq(f["payload"].get("error"), "expected a JSON text frame", "error frame for bytes")
    check(await silent(b), "the other client saw none of the errors")
    check_eq(len(rows(st.db)), 1, "no bad frame changed the database")

    # Both worker processes write the same file at once: nothing is lost or doubled.
    n = 25
    await asyncio.gather(*([a.send(frame("create", text="a%d" % i)) for i in range(n)] +
                           [b.send(frame("create", text="b%d" % i)) for i in range(n)]))
    seen = [set(), set()]
    for i, ws in enumerate((a, b)):
        for _ in range(2 * n):
            f = await recv_json(ws)
            seen[i].add((f["payload"]["pk"], f["payload"]["data"]["text"]))
    in_db = set((pk, text) for pk, _, _, text in rows(st.db) if pk != 2)
    check_eq(len(in_db), 2 * n, "every concurrent create is a row")
    check(seen[0] == in_db and seen[1] == in_db, "both clients saw every concurrent create")
    check(all(p.poll() is None for p in st.procs), "every process is still running")

    for ws in (a, b, other):
        await ws.close()


if __name__ == "__main__":
    with Stack("databinding", workers=2) as st:
        asyncio.run(main(st))
    sys.exit(done())
