#!/usr/bin/python3
"""The echo example end to end: text and bytes frames come back on any path under /echo/, GET
/hello answers "hello"; "later:TEXT" comes back a second later through the asgi.delay service
(laurel-worker --delay, or the development server's own).

Usage: test-echo.py BUILD_DIR"""
import asyncio
import sys
import time

import websockets

from harness import Stack, check, check_eq, done, http, short


async def main(st):
    for path in ["/echo/", "/echo/deeper/path"]:
        async with websockets.connect(st.ws_base + path) as ws:
            for frame in ["hello", "ünïcode ✓", "", b"\x00\x01\xff", b"x" * 100000]:
                await ws.send(frame)
                got = await asyncio.wait_for(ws.recv(), 5)
                check_eq(got, frame, "%s echoes %s" % (path, short(frame, 30)))
    # "later:" comes back a second later, through asgi.delay; frames sent meanwhile first.
    async with websockets.connect(st.ws_base + "/echo/") as ws:
        t0 = time.monotonic()
        await ws.send("later:in a second")
        await ws.send("now")
        check_eq(await asyncio.wait_for(ws.recv(), 5), "now", "a plain frame first")
        got = await asyncio.wait_for(ws.recv(), 5)
        took = time.monotonic() - t0
        check_eq(got, "in a second", "the delayed frame")
        check(0.9 <= took < 3.0, "it came about a second later", took)
    status, headers, body = http("GET", st.base + "/hello")
    check_eq((status, body), (200, b"hello"), "GET /hello")
    check_eq(headers.get("Content-Type"), "text/plain; charset=utf-8", "Content-Type")
    check_eq(http("GET", st.base + "/nothing")[0], 404, "GET /nothing")


if __name__ == "__main__":
    with Stack("echo", workers=2) as st:
        asyncio.run(main(st))
    sys.exit(done())
