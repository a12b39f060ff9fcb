"""The README's main command, as a user runs it: `scripts/chat -p PORT` builds laurel (a no-op in a
built tree), starts the chat example in one process, serves the chat page and answers a WebSocket;
Ctrl-C stops it cleanly.

Run as: test-readme.py BUILD_DIR SOURCE_DIR"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import testlib  # noqa: E402 (tests/lib, on the path harness sets)
from harness import check, check_eq  # noqa: E402

import websockets  # noqa: E402


def main():
    source = os.path.abspath(sys.argv[2])
    port = harness.free_port()
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "laurel-readme-%d.log" % port), "w+")
    proc = subprocess.Popen([os.path.join(source, "scripts", "chat"), "-p", str(port)], cwd=source,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up = False
        deadline = time.time() + 50
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/chat/lobby/" % port, timeout=2) as r:
                    page = r.read().decode("utf-8", "replace")
                    up = True
                    check_eq(r.status, 200, "GET /chat/lobby/ status")
                    check("text/html" in r.headers.get("Content-Type", ""), "the chat page is HTML",
                          r.headers.get("Content-Type"))
                    check("WebSocket" in page, "the page opens a WebSocket", page[:200])
                break
            except OSError:
                time.sleep(0.3)
        check(up, "scripts/chat serves the chat page")

        def unwrap(frame):
            """The room keeps a history (scripts/chat gives --group-history): its frames come in
            laurel's envelope (docs/recovery.md) with an offset."""
            env = json.loads(frame)
            check(isinstance(env.get("offset"), int) and env.get("group") == "chat-lobby",
                  "a room frame in its envelope", env)
            return json.loads(env.get("text", "{}"))

        async def talk():
            uri = "ws://127.0.0.1:%d/chat/lobby/ws?username=readme" % port
            async with websockets.connect(uri, open_timeout=5) as ws:
                event = unwrap(await asyncio.wait_for(ws.recv(), 5))
                check_eq(event.get("type"), "join", "first event")
                check("readme" in event.get("users", []), "the users list has the user", event)
                await ws.send(json.dumps({"text": "hello from the README"}))
                while True:
                    event = unwrap(await asyncio.wait_for(ws.recv(), 5))
                    if event.get("type") == "message":
                        check_eq(event.get("text"), "hello from the README", "the message comes back")
                        break
            # Away and back (the in-memory layer's history): a second user talks meanwhile;
            # with its position the page gets exactly that, then the status, then live.
            rc = await away_and_back(uri)
            check(rc, "a page that comes back recovers what was said meanwhile")

        async def away_and_back(uri):
            async with websockets.connect(uri.replace("readme", "ann")) as ann:
                env = None
                while True:  # up to ann's own join
                    env = json.loads(await asyncio.wait_for(ann.recv(), 5))
                    if json.loads(env["text"]).get("user") == "ann":
                        break
            async with websockets.connect(uri.replace("readme", "bob")) as bob:
                for i in range(3):
                    await bob.send(json.dumps({"text": "meanwhile %d" % i}))
                back = uri.replace("readme", "ann") + "&epoch=%s&offset=%d" % (env["epoch"],
                                                                                env["offset"])
                await asyncio.sleep(0.5)
                async with websockets.connect(back) as ann:
                    got = []
                    while True:
                        f = json.loads(await asyncio.wait_for(ann.recv(), 5))
                        if "recovered" in f:
                            break
                        got.append(json.loads(f["text"]))
            said = [g.get("text") for g in got if g.get("type") == "message"]
            check_eq(said, ["meanwhile 0", "meanwhile 1", "meanwhile 2"],
                     "what bob said while ann was away, once and in order")
            return f.get("recovered") is True

        if up:
            asyncio.run(talk())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        check_eq(proc.returncode, 0, "Ctrl-C stops it cleanly")
        log.seek(0)
        out = log.read()
        check("laurel runserver" in out, "it says what it runs", out[-500:])
        if testlib.failed:
            print(out[-3000:])
        log.close()
        os.unlink(log.name)
    return harness.done()


if __name__ == "__main__":
    sys.exit(main())
