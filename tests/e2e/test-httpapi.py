#!/usr/bin/python3
"""The HTTP API example end to end: status codes, headers and JSON of /api/messages, rows in the
SQLite file, and a POST seen live by a data-binding WebSocket of the room (two workers run the
API with --only-channels http.request, two run the binding example).

Usage: test-httpapi.py BUILD_DIR"""
import asyncio
import json
import os
import sqlite3
import sys

import websockets

from harness import Stack, check, check_eq, done, http

JSON = {"Content-Type": "application/json"}


def call(st, method, path, body=None):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    status, headers, raw = http(method, st.base + path, data, JSON if data is not None else None)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        value = raw
    return status, headers, value


def main(st):
    status, headers, value = call(st, "GET", "/api/messages")
    check_eq((status, value), (200, []), "GET /api/messages on an empty database")
    check_eq(headers.get("Content-Type"), "application/json", "Content-Type")

    status, headers, value = call(st, "POST", "/api/messages",
                                  {"room": "r1", "text": "hello", "author": "ann"})
    check_eq(status, 201, "POST /api/messages")
    check_eq(headers.get("Location"), "/api/messages/1", "Location of the new row")
    check_eq(headers.get("Content-Type"), "application/json", "Content-Type of a 201")
    created = value
    check_eq({k: v for k, v in value.items() if k != "created"},
             {"pk": 1, "room": "r1", "author": "ann", "text": "hello"}, "the new row")
    with sqlite3.connect(st.db, timeout=5) as c:
        check_eq(list(c.execute("SELECT pk, room, author, text FROM messages")),
                 [(1, "r1", "ann", "hello")], "the row is in SQLite")
    call(st, "POST", "/api/messages", {"room": "r2", "text": "other room"})

    check_eq(call(st, "GET", "/api/messages/1")[::2], (200, created), "GET /api/messages/1")
    status, _, value = call(st, "GET", "/api/messages/999")
    check_eq((status, value), (404, {"error": "no such message"}), "GET a missing row")
    status, _, value = call(st, "GET", "/api/messages")
    check_eq((status, [r["pk"] for r in value]), (200, [1, 2]), "GET the list")
    status, _, value = call(st, "GET", "/api/messages?room=r2")
    check_eq((status, [r["text"] for r in value]), (200, ["other room"]), "GET ?room=r2")
    check_eq(call(st, "GET", "/api/messages?room=nobody")[::2], (200, []), "GET ?room=nobody")
    check_eq(call(st, "GET", "/api/messages?room=b%21d")[0], 400, "GET ?room=b!d")
    status, headers, raw = http("HEAD", st.base + "/api/messages")
    check_eq((status, raw), (200, b""), "HEAD /api/messages")

    for body, what in [(b"{not json", "bad JSON"), (b"", "no body"), (b"[1]", "an array"),
                       ({"text": "no room"}, "no room"), ({"room": "r1"}, "no text"),
                       ({"room": "r1", "text": ""}, "empty text"),
                       ({"room": "bad room", "text": "x"}, "a bad room name"),
                       ({"room": "r1", "text": "x", "pk": 5}, "an unknown field"),
                       ({"room": "r1", "text": 7}, "a number as text"),
                       (b'{"room": "r1", "room": "r2", "text": "x"}', "a duplicate key")]:
        status, headers, value = call(st, "POST", "/api/messages", body)
        check(status == 400 and isinstance(value, dict) and isinstance(value.get("error"), str)
              and headers.get("Content-Type") == "application/json",
              "POST %s: 400 with a JSON error" % what, (status, value))

    for method, path, allow in [("PUT", "/api/messages", "GET, HEAD, POST"),
                                ("DELETE", "/api/messages", "GET, HEAD, POST"),
                                ("POST", "/api/messages/1", "GET, HEAD"),
                                ("DELETE", "/api/messages/1", "GET, HEAD")]:
        status, headers, value = call(st, method, path)
        check_eq((status, headers.get("Allow"), value["error"]),
                 (405, allow, "method not allowed"), "%s %s" % (method, path))
    for path in ["/api", "/api/messages/", "/api/messages/abc", "/api/messagesx", "/"]:
        status, headers, value = call(st, "GET", path)
        check_eq((status, headers.get("Content-Type")), (404, "application/json"), "GET " + path)

    with sqlite3.connect(st.db, timeout=5) as c:
        check_eq(c.execute("SELECT count(*) FROM messages").fetchone()[0], 2,
                 "bad requests changed nothing")

    # A row posted over HTTP reaches the room's data-binding WebSockets, and only them.
    async def live():
        r1 = await websockets.connect(st.ws_base + "/demultiplex/r1/")
        r2 = await websockets.connect(st.ws_base + "/demultiplex/r2/")
        status, _, row = await asyncio.get_running_loop().run_in_executor(
            None, call, st, "POST", "/api/messages", {"room": "r1", "text": "over http"})
        f = json.loads(await asyncio.wait_for(r1.recv(), 5))
        check_eq((status, f["stream"], f["payload"]["action"], f["payload"]["pk"],
                  f["payload"]["data"]["text"]), (201, "messages", "create", row["pk"],
                                                  "over http"),
                 "the POST is broadcast to /demultiplex/r1/")
        try:
            await asyncio.wait_for(r2.recv(), 0.3)
            check(False, "r2 does not get r1's row")
        except asyncio.TimeoutError:
            check(True, "r2 does not get r1's row")
        await r1.close()
        await r2.close()

    if not st.runserver:  # the development server runs one application
        asyncio.run(live())


if __name__ == "__main__":
    apps = [("httpapi", ["--only-channels", "http.request"]), "databinding"]
    if os.environ.get("LAUREL_E2E_MODE") == "runserver":
        apps = "httpapi"
    with Stack(apps, workers=2) as st:
        main(st)
    sys.exit(done())
