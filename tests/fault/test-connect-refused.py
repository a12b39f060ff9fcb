#!/usr/bin/python3
"""A websocket.connect whose consumer fails is refused at once: the worker answers {close: true}
and the client gets 403 in well under the interface's --websocket_connect_timeout (5 s), instead
of waiting it out. Two failures: a connect consumer that returns an error (/broken/), and a group
template whose keyword argument the path does not give (/nogroup/). A good connect on the same
stack still works, and nothing is left in the layer for the refused ones.

Usage: test-connect-refused.py BUILD_DIR"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
os.environ.pop("LAUREL_E2E_MODE", None)

import websockets  # noqa: E402
from websockets.exceptions import InvalidStatusCode  # noqa: E402

from harness import Stack, check, check_eq, done  # noqa: E402
from faults import redis  # noqa: E402


async def handshake(url):
    t0 = time.monotonic()
    try:
        ws = await websockets.connect(url, open_timeout=10)
        await ws.close()
        return "open", time.monotonic() - t0
    except InvalidStatusCode as e:
        return e.status_code, time.monotonic() - t0


async def scenario(st):
    for path in ("/broken/", "/nogroup/"):
        for i in range(3):
            status, took = await handshake(st.ws_base + path)
            check_eq(status, 403, "%s (try %d): refused with 403" % (path, i + 1))
            check(took < 1.5, "%s (try %d): refused at once (%.2f s; the connect timeout is 5 s)"
                  % (path, i + 1, took))
    status, _ = await handshake(st.ws_base + "/echo/")
    check_eq(status, "open", "a good connect on the same stack is accepted")
    logs = st.logs()
    check("the handshake refused (403)" in logs,
          "the worker logged the failure and the refusal")
    time.sleep(0.5)
    check_eq(redis(st, "KEYS", "asgi::group:*"), "", "no group left behind by the refused connects")


if __name__ == "__main__":
    st = Stack("chat", workers=1, timeout=50)
    st.apps = [[os.path.join(st.build, "tests", "integration", "worker", "liblaurel-testapp.so")]]
    with st:
        asyncio.run(scenario(st))
    sys.exit(done())
