#!/usr/bin/python3
"""WebSocket client tests of laurel-interface (SPEC §4-5, Daphne 1.4.2 parity).

Usage: test-websocket.py INTERFACE RESPONDER [LAUREL_TOOL]

Starts its own redis-server on a free port in a temporary directory, the test responder
(--websocket --record FILE, a Channels 1 consumer at the Redis level) and laurel-interface
instances with the flags each test needs, and drives them with python3-websockets 10.4 (Debian's,
so run by /usr/bin/python3). Everything waits with deadlines; everything started is stopped at the
end. Prints one line per check and "N passed, N failed"; exits 1 if any failed.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import testlib  # noqa: E402
from testlib import (await_for, check, check_eq, done, free_port, log, recv_until,  # noqa: E402
                     stop, wait_for)

INTERFACE, RESPONDER = sys.argv[1], sys.argv[2]
TOOL = sys.argv[3] if len(sys.argv) > 3 else None
TMP = tempfile.mkdtemp(prefix="laurel-ws-")
PROCS = []


# --- Redis -------------------------------------------------------------------------------------


class Redis:
    """A minimal RESP client (the tests only look at keys from the outside)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.f = self.sock.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.reply()

    def reply(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

    def close(self):
        self.f.close()
        self.sock.close()


# --- Processes ---------------------------------------------------------------------------------


class Proc:
    def __init__(self, name, argv, stdout=None):
        self.name = name
        self.log = os.path.join(TMP, name + ".log")
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen(argv, stdout=stdout if stdout else self.logf,
                                  stderr=self.logf, stdin=subprocess.DEVNULL)
        PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        rc = stop(self.p, sig, timeout)
        self.logf.close()
        return rc

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def dump(self):
        log("---- tail of %s ----" % self.log)
        for line in self.text().splitlines()[-25:]:
            log("  " + line)


REDIS_PORT = free_port()
LAYER = "redis://127.0.0.1:%d" % REDIS_PORT
RECORD = os.path.join(TMP, "responder.rec")


def start_redis():
    d = os.path.join(TMP, "redis")
    os.mkdir(d)
    p = Proc("redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                       "--dir", d, "--save", "", "--appendonly", "no", "--loglevel", "warning"])

    def up():
        try:
            r = Redis(REDIS_PORT)
            ok = r.cmd("PING") == "PONG"
            r.close()
            return ok
        except OSError:
            return False

    if not wait_for(up, 10):
        p.dump()
        raise RuntimeError("redis-server did not start")
    return p


def start_responder():
    p = Proc("responder", [RESPONDER, "--port", str(REDIS_PORT), "--websocket", "--record",
                           RECORD], stdout=subprocess.PIPE)
    line = p.p.stdout.readline()
    if b"ready" not in line:
        p.dump()
        raise RuntimeError("responder did not start")
    return p


class Iface:
    count = 0

    def __init__(self, *args):
        Iface.count += 1
        self.port = free_port()
        self.name = "iface%d" % Iface.count
        self.access = os.path.join(TMP, self.name + ".access")
        self.proc = Proc(self.name, [INTERFACE, "-p", str(self.port), "--layer", LAYER,
                                     "--access-log", self.access] + list(args))

        def up():
            if not self.proc.alive():
                return True
            if "listening" not in self.proc.text():
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        if not wait_for(up, 10) or not self.proc.alive():
            self.proc.dump()
            raise RuntimeError("laurel-interface %s did not start" % " ".join(args))
        m = re.search(r"reply channel (\S+!)", self.proc.text())
        self.prefix = m.group(1) if m else None

    def url(self, path):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def access_lines(self):
        try:
            with open(self.access) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self, sig=signal.SIGTERM):
        return self.proc.stop(sig)


# --- The responder's record file ---------------------------------------------------------------


def parse_value(s, i):
    c = s[i:i + 1]
    if c == b'"' or s[i:i + 2] == b'b"':
        isbytes = c == b"b"
        i += 2 if isbytes else 1
        out = bytearray()
        while s[i:i + 1] != b'"':
            if s[i:i + 1] == b"\\":
                e = s[i + 1:i + 2]
                if e == b"x":
                    out.append(int(s[i + 2:i + 4], 16))
                    i += 4
                elif e == b"u":
                    out.append(int(s[i + 2:i + 6], 16))
                    i += 6
                else:
                    out += e
                    i += 2
            else:
                out += s[i:i + 1]
                i += 1
        return (bytes(out) if isbytes else out.decode("utf-8")), i + 1
    if c == b"[":
        i += 1
        items = []
        while s[i:i + 1] != b"]":
            v, i = parse_value(s, i)
            items.append(v)
            if s[i:i + 1] == b",":
                i += 1
        return items, i + 1
    if c == b"{":
        i += 1
        items = []
        while s[i:i + 1] != b"}":
            k, i = parse_value(s, i)
            assert s[i:i + 1] == b":"
            v, i = parse_value(s, i + 1)
            items.append((k, v))
            if s[i:i + 1] == b",":
                i += 1
        return items, i + 1
    m = re.compile(rb"true|false|null|-?[0-9][0-9.eE+-]*|-?inf|nan").match(s, i)
    t = m.group(0)
    v = {b"true": True, b"false": False, b"null": None}.get(t)
    if v is None and t not in (b"null",):
        v = float(t) if re.search(rb"[.eEn]", t) else int(t)
    return v, m.end()


def records():
    """Every line of the record file as a list of (key, value), in wire order."""
    try:
        with open(RECORD, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        if line:
            out.append(parse_value(line, 0)[0])
    return out


def rec_get(items, key):
    for k, v in items:
        if k == key:
            return v
    return None


def find_records(channel, reply=None, client_port=None):
    out = []
    for r in records():
        if rec_get(r, "channel") != channel:
            continue
        if reply is not None and rec_get(r, "reply_channel") != reply:
            continue
        if client_port is not None and (rec_get(r, "client") or [None, None])[1] != client_port:
            continue
        out.append(r)
    return out


async def reply_channel_of(ws, timeout=5):
    port = ws.local_address[1]
    r = await await_for(lambda: find_records("websocket.connect", client_port=port), timeout)
    # The newest: a client port can be reused by a later connection of the same test run.
    return rec_get(r[-1], "reply_channel") if r else None


# --- Tests -------------------------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


async def expect_status(url, status, what, **kw):
    try:
        ws = await websockets.connect(url, open_timeout=10, **kw)
        await ws.close()
        check(False, "%s: connected, expected HTTP %d" % (what, status))
    except InvalidStatusCode as e:
        check_eq(e.status_code, status, what)


async def recv(ws, timeout=5):
    return await asyncio.wait_for(ws.recv(), timeout)


async def nothing_within(ws, seconds):
    try:
        m = await asyncio.wait_for(ws.recv(), seconds)
        return m
    except asyncio.TimeoutError:
        return None


def raw_handshake(port, path="/chat", extra=b"", key=b"dGhlIHNhbXBsZSBub25jZQ=="):
    """Sends a handshake by hand; returns the response head (bytes) and the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
              b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
    return recv_until(s, b"\r\n\r\n"), s


@test
async def accept_key(f):
    head, s = raw_handshake(f.port)
    s.close()
    lines = head.split(b"\r\n")
    check_eq(lines[0], b"HTTP/1.1 101 Switching Protocols", "101 status line")
    check(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head,
          "Sec-WebSocket-Accept for the RFC 6455 key: %r" % head)
    check(re.search(rb"(?im)^upgrade: *websocket\r$", head) is not None, "Upgrade: websocket")
    check(re.search(rb"(?im)^connection: *upgrade\r$", head) is not None, "Connection: Upgrade")
    # websockets checks the accept key itself.
    async with websockets.connect(f.url("/chat/accept")) as ws:
        check(ws.open, "websockets handshake")


@test
async def echo_text_and_bytes(f):
    async with websockets.connect(f.url("/chat/echo")) as ws:
        await ws.send("hello ☃")
        check_eq(await recv(ws), "hello ☃", "text echo")
        await ws.send(b"\x00\x01\xfe\xff")
        check_eq(await recv(ws), b"\x00\x01\xfe\xff", "bytes echo")
        await ws.send("")
        check_eq(await recv(ws), "", "empty text echo")
        big = "x" * 70000
        await ws.send(big)
        check_eq(await recv(ws), big, "70000-character echo")


@test
async def connect_message_fields(f):
    async with websockets.connect(f.url("/chat/room%20one/?a=1&b=%20")) as ws:
        reply = await reply_channel_of(ws)
        check(reply is not None, "websocket.connect recorded")
        r = find_records("websocket.connect", reply=reply)
        if not r:
            return
        r = r[0]
        check_eq([k for k, _ in r],
                 ["channel", "path", "headers", "query_string", "client", "server",
                  "reply_channel", "order"], "websocket.connect keys in Daphne's order")
        check_eq(rec_get(r, "path"), "/chat/room one/", "path (percent-decoded text)")
        want = [[k.lower().encode(), v.encode()] for k, v in ws.request_headers.raw_items()]
        check_eq(rec_get(r, "headers"), want, "headers as [bytes, bytes] in order")
        check_eq(rec_get(r, "query_string"), b"a=1&b=%20", "query_string bytes")
        check_eq(rec_get(r, "client"), ["127.0.0.1", ws.local_address[1]], "client")
        check_eq(rec_get(r, "server"), ["127.0.0.1", f.port], "server")
        check(isinstance(reply, str) and f.prefix and reply.startswith(f.prefix)
              and len(reply) > len(f.prefix), "reply_channel %r under %r" % (reply, f.prefix))
        check_eq(rec_get(r, "order"), 0, "order 0")


@test
async def order_and_disconnect(f):
    ws = await websockets.connect(f.url("/chat/order"))
    reply = await reply_channel_of(ws)
    got = []
    for _ in range(3):
        await ws.send("order")
        got.append(await recv(ws))
    check_eq(got, ["1", "2", "3"], "order seen by the application")
    rs = find_records("websocket.receive", reply=reply)
    check_eq([rec_get(r, "order") for r in rs], [1, 2, 3], "websocket.receive orders")
    if rs:
        check_eq([k for k, _ in rs[0]], ["channel", "reply_channel", "path", "order", "text"],
                 "websocket.receive keys in Daphne's order")
        check_eq(rec_get(rs[0], "path"), "/chat/order", "websocket.receive path")
    await ws.send(b"bin")
    await recv(ws)
    rs = find_records("websocket.receive", reply=reply)
    check(len(rs) == 4 and rec_get(rs[3], "bytes") == b"bin" and rec_get(rs[3], "text") is None
          and rec_get(rs[3], "order") == 4, "binary websocket.receive has bytes only, order 4")
    await ws.close(4123, "bye")
    d = await await_for(lambda: find_records("websocket.disconnect", reply=reply), 5)
    check(len(d) == 1, "one websocket.disconnect (%d)" % len(d))
    if d:
        check_eq(d[0], [("channel", "websocket.disconnect"), ("reply_channel", reply),
                        ("code", 4123), ("path", "/chat/order"), ("order", 5)],
                 "websocket.disconnect")


@test
async def disconnect_without_close_frame(f):
    ws = await websockets.connect(f.url("/chat/drop"))
    reply = await reply_channel_of(ws)
    await ws.send("a")
    await recv(ws)
    ws.transport.abort()  # TCP reset, no close frame
    d = await await_for(lambda: find_records("websocket.disconnect", reply=reply), 5)
    check(len(d) == 1 and rec_get(d[0], "code") == 1006 and rec_get(d[0], "order") == 2,
          "websocket.disconnect after a dropped TCP connection: code 1006, order 2: %r" % d)


@test
async def reject(f):
    await expect_status(f.url("/ws/reject"), 403, "{close: true} before accept -> 403")
    await expect_status(f.url("/ws/refuse"), 403, "{accept: false} -> 403")
    lines = f.access_lines()
    for path in ("/ws/reject", "/ws/refuse"):
        check(any('"WSREJECT %s" - -' % path in l for l in lines), "WSREJECT %s logged" % path)
        check(not any('"WSCONNECT %s"' % path in l for l in lines),
              "no WSCONNECT for %s" % path)


@test
async def implicit_accept(f):
    async with websockets.connect(f.url("/ws/implicit")) as ws:
        check_eq(await recv(ws), "welcome", "text before accept accepts and is delivered")
        await ws.send("still here")
        check_eq(await recv(ws), "still here", "echo after implicit accept")


async def test_hold_while_connecting(f):
    """A recovery's hold that reaches the interface while the handshake is still open (the
    connect consumer recovers before it accepts) takes effect: a live message of the group that
    comes next accepts the handshake but is kept until the final batch, then follows the missed
    ones and the status — never before them, never twice."""
    def nevers():
        return [x for x in find_records("websocket.connect")
                if rec_get(x, "path") in (b"/ws/never", "/ws/never")]
    before = len(nevers())
    task = asyncio.ensure_future(websockets.connect(f.url("/ws/never"), open_timeout=10))
    reply = None
    for _ in range(100):
        r = nevers()
        if len(r) > before:
            reply = rec_get(r[-1], "reply_channel")
            break
        await asyncio.sleep(0.05)
    check(reply is not None, "the connect of /ws/never recorded")
    reply = reply.decode() if isinstance(reply, bytes) else reply
    epoch = "0123456789abcdef"
    sends = [
        {"__laurel_recovery__": {"group": "hg", "hold": True}},
        {"text": "live7", "__laurel_history__": ["hg", epoch, 7]},
        {"__laurel_recovery__": {"group": "hg", "epoch": epoch, "offset": 6, "recovered": True,
                                 "final": True}, "messages": [[5, "m5"], [6, "m6"]]},
    ]
    for m in sends:
        out = subprocess.run([TOOL, "--layer", LAYER, "send", reply, json.dumps(m)],
                             capture_output=True, timeout=20)
        check_eq(out.returncode, 0, "laurel send (%r)" % out.stderr)
    ws = await task
    got = []
    for _ in range(4):
        try:
            got.append(json.loads(await recv(ws)))
        except (asyncio.TimeoutError, ConnectionClosed) as e:
            got.append(repr(e))
            break
    check_eq([g.get("offset") if isinstance(g, dict) else g for g in got], [5, 6, 6, 7],
             "the missed ones, the status (offset 6), then the kept live one")
    check(isinstance(got[2], dict) and got[2].get("recovered") is True, "the status", got[2])
    check(isinstance(got[3], dict) and got[3].get("text") == "live7", "the live one", got[3])
    m = await nothing_within(ws, 0.3)
    check(m is None, "nothing twice (then %r)" % (m,))
    await ws.close()


@test
async def app_close_codes(f):
    for text, code in (("close:4001", 4001), ("close", 1000), ("close:3000", 3000)):
        ws = await websockets.connect(f.url("/chat/close"))
        reply = await reply_channel_of(ws)
        await ws.send(text)
        try:
            await recv(ws)
            check(False, "%r: a message instead of a close" % text)
        except ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            check(False, "%r: no close within 5 s" % text)
        check_eq(ws.close_code, code, "client sees close code after %r" % text)
        d = await await_for(lambda: find_records("websocket.disconnect", reply=reply), 5)
        check(len(d) == 1 and rec_get(d[0], "code") == code and rec_get(d[0], "order") == 2,
              "websocket.disconnect after %r: %r" % (text, d))
        await ws.close()


@test
async def both_text_and_bytes_dropped(f):
    async with websockets.connect(f.url("/chat/both")) as ws:
        await ws.send("both")
        m = await nothing_within(ws, 0.5)
        check(m is None, "{text, bytes} is dropped (got %r)" % (m,))
        await ws.send("after")
        check_eq(await recv(ws), "after", "connection works after a dropped reply")


@test
async def subprotocols(f):
    async with websockets.connect(f.url("/chat/proto"), subprotocols=["v3", "v2", "chat"]) as ws:
        check_eq(ws.subprotocol, "v2", "first of the client's list that is accepted")
    async with websockets.connect(f.url("/chat/proto"), subprotocols=["chat", "v2"]) as ws:
        check_eq(ws.subprotocol, "chat", "client order wins")
    head, s = raw_handshake(f.port, extra=b"Sec-WebSocket-Protocol: x, y\r\n")
    s.close()
    check(head.startswith(b"HTTP/1.1 101") and b"sec-websocket-protocol" not in head.lower(),
          "no match: 101 without a protocol header: %r" % head)
    head, s = raw_handshake(f.port, extra=b"Sec-WebSocket-Protocol: x,v2\r\n")
    s.close()
    check(b"\r\nSec-WebSocket-Protocol: v2\r\n" in head, "list without spaces: %r" % head)


async def test_origins(f):
    async with websockets.connect(f.url("/chat/o"), origin="https://ok.example") as ws:
        await ws.send("o")
        check_eq(await recv(ws), "o", "allowed origin accepted")
    await expect_status(f.url("/chat/o"), 403, "other origin -> 403",
                        origin="https://evil.example")
    await expect_status(f.url("/chat/o"), 403, "no origin -> 403")
    await expect_status(f.url("/chat/o"), 403, "origin prefix -> 403",
                        origin="https://ok.example.evil")


async def test_connect_timeout(f):
    t0 = time.monotonic()
    await expect_status(f.url("/ws/never"), 403, "no answer within --websocket_connect_timeout")
    dt = time.monotonic() - t0
    check(0.8 <= dt <= 2.5, "403 after %.2f s (timeout 1 s)" % dt)
    check(any('"WSREJECT /ws/never" - -' in l for l in f.access_lines()),
          "WSREJECT for the timeout")


async def test_full(f, redis):
    redis.cmd("RPUSH", "full:websocket.connect", "full:dummy")
    await expect_status(f.url("/chat/full"), 503, "full websocket.connect -> 503")
    check_eq(redis.cmd("LLEN", "full:websocket.connect"), 1, "nothing added to the full channel")


@test
async def group_broadcast(f):
    conns = [await websockets.connect(f.url("/ws/group/G1")) for _ in range(3)]
    await conns[0].send("broadcast:G1:hi")
    got = []
    for ws in conns:
        try:
            got.append(await recv(ws))
        except (asyncio.TimeoutError, ConnectionClosed) as e:
            got.append(repr(e))
    check_eq(got, ["hi", "hi", "hi"], "group of 3: each receives the broadcast")
    for ws in conns:
        check(await nothing_within(ws, 0.2) is None, "exactly one message")
        await ws.close()


async def test_multicast(f, redis):
    """A group send through the layer (laurel group-send): the members on this interface get one
    multicast message on its queue, framed once, and each connection exactly one "x"."""
    conns = [await websockets.connect(f.url("/ws/group/MC")) for _ in range(2)]
    replies = [await reply_channel_of(ws) for ws in conns]
    members = redis.cmd("ZRANGE", "asgi::group:MC", "0", "-1")
    check_eq(sorted(m.decode() for m in members), sorted(replies), "group members")
    mon = socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=5)
    mon.sendall(b"MONITOR\r\n")
    mon.recv(100)
    out = subprocess.run([TOOL, "--layer", LAYER, "group-send", "MC", '{"text":"x"}'],
                         capture_output=True, timeout=20)
    check_eq(out.returncode, 0, "laurel group-send exit status (%r)" % out.stderr)
    got = []
    for ws in conns:
        try:
            got.append(await recv(ws))
        except (asyncio.TimeoutError, ConnectionClosed) as e:
            got.append(repr(e))
    check_eq(got, ["x", "x"], "each member receives x")
    for ws in conns:
        m = await nothing_within(ws, 0.3)
        check(m is None, "exactly one x (then %r)" % (m,))
    mon.settimeout(0.3)
    seen = b""
    try:
        while True:
            d = mon.recv(65536)
            if not d:
                break
            seen += d
    except socket.timeout:
        pass
    mon.close()
    queue = ("asgi:" + f.prefix).encode()
    pushes = [l for l in seen.split(b"\r\n") if b'"rpush"' in l.lower() and queue in l]
    check_eq(len(pushes), 1, "one queue entry on %s for 2 members (multicast)" % queue.decode())
    for ws in conns:
        await ws.close()


async def test_keepalive(f):
    # The client answers pings (websockets does) and never pings itself.
    ws = await websockets.connect(f.url("/chat/ka"), ping_interval=None)
    await asyncio.sleep(3.5)
    check(ws.open, "a client that answers pings stays open for 3.5 s (ping 1 s, timeout 1 s)")
    if ws.open:
        await ws.send("alive")
        check_eq(await recv(ws), "alive", "still echoing after 3.5 s")
    await ws.close()


async def test_websocket_timeout(f):
    ws = await websockets.connect(f.url("/chat/lifetime"), ping_interval=None)
    t0 = time.monotonic()
    try:
        await recv(ws, 6)
        check(False, "a message instead of a close")
    except ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        check(False, "not closed within 6 s (--websocket_timeout 2)")
    dt = time.monotonic() - t0
    check(1.7 <= dt <= 3.0, "closed after %.2f s (--websocket_timeout 2)" % dt)
    check_eq(ws.close_code, 1000, "close code at --websocket_timeout")


async def test_sigterm(f):
    conns = [await websockets.connect(f.url("/chat/term%d" % i)) for i in range(5)]
    replies = [await reply_channel_of(ws) for ws in conns]
    for ws in conns:
        await ws.send("ready")
        await recv(ws)
    t0 = time.monotonic()
    f.proc.p.send_signal(signal.SIGTERM)
    for i, ws in enumerate(conns):
        try:
            await recv(ws, 5)
            check(False, "a message instead of a close")
        except ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            check(False, "no close within 5 s of SIGTERM")
        check_eq(ws.close_code, 1001, "close code on SIGTERM (connection %d)" % i)
    rc = await await_for(lambda: f.proc.p.poll(), 8) if True else None
    rc = f.proc.p.poll()
    check_eq(rc, 0, "exit status after SIGTERM (%.1f s)" % (time.monotonic() - t0))
    for reply in replies:
        d = await await_for(lambda: find_records("websocket.disconnect", reply=reply), 3)
        check(len(d) == 1 and rec_get(d[0], "code") == 1001,
              "websocket.disconnect for %s after SIGTERM: %r" % (reply, d))


def check_access_log(f, paths):
    pat = re.compile(r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\] '
                     r'"(WSCONNECTING|WSCONNECT|WSREJECT|WSDISCONNECT) (/.*)" - (-|\d+)$')
    lines = [l for l in f.access_lines() if '"WS' in l]
    bad = [l for l in lines if not pat.match(l)]
    check(not bad, "access log lines in Daphne's format: %r" % bad[:3])
    seen = [pat.match(l).groups()[:2] for l in lines if pat.match(l)]
    for path, want in paths.items():
        got = [a for a, p in seen if p == path]
        check_eq(got, want, "access log actions for %s" % path)


async def main():
    redis_proc = start_redis()
    responder = start_responder()
    redis = Redis(REDIS_PORT)
    ifaces = []
    try:
        f = Iface("--ws-protocol", "chat", "--ws-protocol", "v2")
        ifaces.append(f)
        for t in TESTS:
            log("== " + t.__name__)
            try:
                await asyncio.wait_for(t(f), 30)
            except Exception:
                check(False, "%s raised:\n%s" % (t.__name__, traceback.format_exc()))
        check_access_log(f, {
            "/chat/order": ["WSCONNECTING", "WSCONNECT", "WSDISCONNECT"],
            "/ws/implicit": ["WSCONNECTING", "WSCONNECT", "WSDISCONNECT"],
        })
        check(any('"WSREJECT /ws/reject" - -' in l for l in f.access_lines()), "WSREJECT line")

        async def run(name, coro):
            log("== " + name)
            try:
                await asyncio.wait_for(coro, 30)
            except Exception:
                check(False, "%s raised:\n%s" % (name, traceback.format_exc()))

        o = Iface("--allowed-origins", "https://ok.example")
        ifaces.append(o)
        await run("origins", test_origins(o))
        c = Iface("--websocket_connect_timeout", "1")
        ifaces.append(c)
        await run("connect_timeout", test_connect_timeout(c))
        full = Iface("--prefix", "full:", "--capacity", "1")
        ifaces.append(full)
        await run("full", test_full(full, redis))
        if TOOL:
            await run("multicast", test_multicast(f, redis))
            await run("hold_while_connecting", test_hold_while_connecting(f))
        ka = Iface("--ping-interval", "1", "--ping-timeout", "1")
        to = Iface("--websocket_timeout", "2")
        ifaces += [ka, to]
        await asyncio.gather(run("keepalive", test_keepalive(ka)),
                             run("websocket_timeout", test_websocket_timeout(to)))
        term = Iface()
        ifaces.append(term)
        await run("sigterm", test_sigterm(term))
        check_access_log(term, {"/chat/term0": ["WSCONNECTING", "WSCONNECT", "WSDISCONNECT"]})
        for i in ifaces:
            if i is not term and i.proc.alive():
                rc = i.stop()
                check_eq(rc, 0, "%s exit status" % i.name)
        for i in ifaces:
            text = i.proc.text()
            if "Sanitizer" in text or "runtime error:" in text:
                check(False, "sanitizer report in %s" % i.proc.log)
                i.proc.dump()
    finally:
        redis.close()
        for p in reversed(PROCS):
            p.stop(signal.SIGKILL if p.name == "redis" else signal.SIGTERM)
        if testlib.failed:
            for i in ifaces:
                i.proc.dump()
            responder.dump()
            log("logs kept in " + TMP)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
        del redis_proc
    return done()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
