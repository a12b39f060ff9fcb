#!/usr/bin/python3
"""The chat example end to end: redis-server, two laurel-interface and two laurel-worker
processes, python3-websockets clients, and the laurel tool's background push.

Usage: test-chat.py BUILD_DIR"""
import asyncio
import json
import sys

import websockets

from harness import Stack, check, check_eq, done, http
from testlib import recv_json, silent  # tests/lib, on the path harness sets

TIMEOUT = 5


async def closed_with(ws):
    """Reads until the server closes; returns (frames, close code)."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
    except websockets.ConnectionClosed:
        return frames, ws.close_code


async def main(st):
    # alice on the first interface, bob on the second: nothing may depend on sharing a process.
    url1 = st.ws_bases[0] + "/chat/%s/ws?username=%s"
    url2 = st.ws_bases[-1] + "/chat/%s/ws?username=%s"

    alice = await websockets.connect(url1 % ("room1", "alice"))
    f = await recv_json(alice)
    check_eq(f, {"type": "join", "user": "alice", "users": ["alice"]}, "alice's own join")

    bob = await websockets.connect(url2 % ("room1", "bob"))
    f = await recv_json(bob)
    check_eq(f, {"type": "join", "user": "bob", "users": ["alice", "bob"]}, "bob's own join")
    f = await recv_json(alice)
    check_eq(f, {"type": "join", "user": "bob", "users": ["alice", "bob"]}, "alice sees bob join")

    await alice.send(json.dumps({"text": "hi bob, ünïcode ✓"}))
    want = {"type": "message", "user": "alice", "text": "hi bob, ünïcode ✓",
            "users": ["alice", "bob"]}
    check_eq(await recv_json(bob), want, "bob gets alice's message")
    check_eq(await recv_json(alice), want, "alice gets her own message")
    await bob.send(json.dumps({"text": "hello alice"}))
    check_eq((await recv_json(alice))["text"], "hello alice", "alice gets bob's message")
    check_eq((await recv_json(bob))["text"], "hello alice", "bob gets his own message")

    # A second "bob" is refused with a reason and close 4001; the first bob stays.
    dup = await websockets.connect(url1 % ("room1", "bob"))
    frames, code = await closed_with(dup)
    check_eq(frames, [{"type": "error", "reason": "username taken"}], "duplicate bob's frames")
    check_eq(code, 4001, "duplicate bob's close code")
    check(await silent(alice, 0.3), "alice hears nothing of the refused duplicate")

    bad = await websockets.connect(url1 % ("room1", "bad%20name"))
    frames, code = await closed_with(bad)
    check(len(frames) == 1 and frames[0]["type"] == "error", "bad name: an error frame", frames)
    check_eq(code, 4002, "bad name's close code")
    nobody = await websockets.connect(st.ws_base + "/chat/room1/ws")
    frames, code = await closed_with(nobody)
    check_eq(code, 4002, "no username's close code")

    # A frame that is not {"text": ...} is answered with an error, to the sender only.
    await bob.send("not json")
    f = await recv_json(bob)
    check_eq(f.get("type"), "error", "bob's bad frame answered with an error")
    check(await silent(alice, 0.3), "alice does not see bob's bad frame")

    # Who is online, from the outside.
    rc, out = st.tool("group-members", "chat-room1.users")
    check_eq((rc, out.split()), (0, ["2", "user.alice", "user.bob"]), "laurel group-members")
    rc, out = st.tool("group-members", "chat-room1")
    check_eq(out.split()[:1], ["2"], "two connections in chat-room1")

    # Another room is isolated.
    carol = await websockets.connect(url2 % ("room2", "carol"))
    f = await recv_json(carol)
    check_eq(f, {"type": "join", "user": "carol", "users": ["carol"]}, "carol alone in room2")
    await carol.send(json.dumps({"text": "anyone?"}))
    check_eq((await recv_json(carol))["text"], "anyone?", "carol gets her message")
    # bob is a name in room1 only: room2 may have its own bob.
    bob2 = await websockets.connect(url1 % ("room2", "bob"))
    f = await recv_json(bob2)
    check_eq(f["users"], ["carol", "bob"], "another bob in room2")
    check_eq((await recv_json(carol))["user"], "bob", "carol sees room2's bob join")
    check(await silent(alice, 0.3), "room1 hears nothing of room2")

    # The background push one-liner of docs/examples.md.
    push = {"type": "message", "user": "ops", "text": "deploy in 5 minutes"}
    rc, out = st.tool("group-send", "chat-room1", json.dumps({"text": json.dumps(push)}))
    check_eq((rc, out.strip()), (0, "2"), "laurel group-send reached 2 connections")
    check_eq(await recv_json(alice), push, "alice gets the pushed message")
    check_eq(await recv_json(bob), push, "bob gets the pushed message")
    check(await silent(carol, 0.3), "room2 does not get room1's push")

    # A group with a history (docs/recovery.md): each member gets the message in its JSON
    # envelope, with its offset, the text escaped whatever it holds.
    odd = 'he said "hi" \\ back\nslash \x01 \u00e9 \U0001f600'
    epoch = None
    for i, text in enumerate([json.dumps(push), odd], 1):
        rc, out = st.tool("--group-history", "chat-room1=50/600", "group-send", "chat-room1",
                          json.dumps({"text": text}))
        lines = out.split("\n")
        check_eq((rc, lines[0]), (0, "2"), "group-send with a history reached 2 connections")
        epoch = epoch or (lines[1].split() + ["", ""])[1]
        check_eq(lines[1], "epoch %s offset %d" % (epoch, i), "group-send prints its offset")
        want = {"group": "chat-room1", "epoch": epoch, "offset": i, "text": text}
        check_eq(await recv_json(alice), want, "alice gets message %d in its envelope" % i)
        check_eq(await recv_json(bob), want, "bob gets message %d in its envelope" % i)
    # A binary message: its bytes in base64, in a text frame.
    rc, out = st.tool("--group-history", "chat-room1=50/600", "group-send", "chat-room1",
                      '{"bytes": {"$bytes": "AP9oaQ=="}}')
    want = {"group": "chat-room1", "epoch": epoch, "offset": 3, "bytes": "AP9oaQ=="}
    check_eq(await recv_json(alice), want, "alice gets a binary message in its envelope")
    check_eq(await recv_json(bob), want, "bob gets a binary message in its envelope")
    rc, out = st.tool("--group-history", "chat-room1=50/600", "group-history", "chat-room1",
                      epoch, "1")
    line = (out.split("\n") + ["", ""])[1].split(" ", 1) + [""]
    check_eq((rc, line[0], json.loads(line[1] or "null")), (0, "2", {"text": odd}),
             "laurel group-history: what a client that saw offset 1 missed")

    # Leaving updates the list; the name is free again.
    await bob.close()
    f = await recv_json(alice)
    check_eq(f, {"type": "leave", "user": "bob", "users": ["alice"]}, "alice sees bob leave")
    bob = await websockets.connect(url2 % ("room1", "bob"))
    check_eq((await recv_json(bob))["users"], ["alice", "bob"], "bob may come back under his name")
    check_eq((await recv_json(alice))["user"], "bob", "alice sees bob come back")

    for ws in (alice, bob, carol, bob2):
        await ws.close()
    # Everyone gone: the roster and the groups are empty again.
    for _ in range(50):
        rc, out = st.tool("group-members", "chat-room1.users")
        if out.split() == ["0"]:
            break
        await asyncio.sleep(0.1)
    check_eq(out.split(), ["0"], "room1's roster is empty when everyone left")

    # The page, and the HTTP routes around it.
    status, headers, body = http("GET", st.base + "/chat/room1/")
    check_eq(status, 200, "GET /chat/room1/")
    check(headers.get("Content-Type", "").startswith("text/html"), "the page is HTML",
          headers.get("Content-Type"))
    check(b"new LaurelSocket" in body and b"class LaurelSocket" in body and b"</html>" in body,
          "the page is the chat page, with clients/js inline")
    status, headers, body = http("GET", st.base + "/chat/")  # redirected to the lobby
    check_eq((status, b"room" in body), (200, True), "GET /chat/ leads to a room's page")
    status, _, _ = http("GET", st.base + "/nothing/here")
    check_eq(status, 404, "GET /nothing/here")


if __name__ == "__main__":
    with Stack("chat", workers=2, interfaces=2) as st:
        asyncio.run(main(st))
    sys.exit(done())
