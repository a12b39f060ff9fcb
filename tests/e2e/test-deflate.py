#!/usr/bin/python3
"""permessage-deflate (RFC 7692, docs/interface.md) with real clients against a real
redis-server, laurel-interface (--ws-max-message 65536, --metrics) and a laurel-worker pool
running the test application (/echo/ echoes, /chat/ROOM/ broadcasts to the room).

- python3-websockets with and without compression, and with each parameter it can offer
  (server_/client_no_context_takeover, server_/client_max_window_bits): the answer's
  Sec-WebSocket-Extensions, messages both ways, and the metrics counting what went compressed
  (a message under the threshold goes plain).
- Offers laurel declines (unknown or repeated parameters, server_max_window_bits=8, bad values,
  another extension) get a 101 without the extension and plain messages; the first acceptable
  offer of a list wins.
- A raw client: compressed messages fed whole, fragmented, one byte per write, ending with a
  final block, binary; a compressed message of exactly --ws-max-message inflated is echoed, one
  byte more closes with 1009, and so does a 60 MiB bomb, without the interface's peak memory
  growing; bad deflate data and compressed invalid UTF-8 close with 1007; RSV1 on a continuation,
  on a ping, with RSV2, or on a connection without the extension close with 1002.
- --ws-compression off: the offer is declined and RSV1 is a protocol error.
- A 10,000-member broadcast where half the members negotiated deflate (bench-ws): every member
  gets every message, the compressed half inflates them, and the interface compressed each
  broadcast exactly once (laurel_interface_websocket_compressions_total).
- Afterwards nothing is left in Redis: the room's group has no member.

Usage: test-deflate.py BUILD_DIR"""
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request
import zlib

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, build_dir, check, check_eq, done, free_port, wait_port  # noqa: E402

MAX = 65536
MEMBERS = int(os.environ.get("DEFLATE_MEMBERS", "10000"))
BROADCASTS = 5


def metrics(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read()
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def deflate(data, final=False):
    c = zlib.compressobj(wbits=-15)
    if final:
        return c.compress(data) + c.flush()  # ends with a final block (BFINAL)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data):
    d = zlib.decompressobj(wbits=-15)
    return d.decompress(data + b"\x00\x00\xff\xff")


class Raw:
    """A WebSocket client written out by hand: it sends any frame, RSV bits included."""

    def __init__(self, port, path="/echo/", ext=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n" % path)
        for e in ([ext] if isinstance(ext, str) else ext or []):
            req += "Sec-WebSocket-Extensions: %s\r\n" % e
        self.s.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.ext = self.headers.get("sec-websocket-extensions")

    def frame(self, opcode, payload, fin=True, rsv=0):
        mask = os.urandom(4)
        h = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        n = len(payload)
        if n < 126:
            h += bytes([0x80 | n])
        elif n < 65536:
            h += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            h += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        return h + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

    def send(self, *a, **k):
        self.s.sendall(self.frame(*a, **k))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7f
        if n == 126:
            n = int.from_bytes(self._read(2), "big")
        elif n == 127:
            n = int.from_bytes(self._read(8), "big")
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0f, self._read(n)

    def recv(self):
        """The next data message: (opcode, rsv1, payload inflated)."""
        while True:
            fin, rsv, op, data = self.recv_frame()
            if op == 9:
                continue
            if op == 8:
                return op, False, data
            check(fin, "laurel sends whole messages")
            return op, bool(rsv & 4), inflate(data) if rsv & 4 else data

    def close_code(self):
        """Reads until the close frame; its code (None if the connection just ended)."""
        try:
            while True:
                fin, rsv, op, data = self.recv_frame()
                if op == 8:
                    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        except (ConnectionError, socket.timeout, OSError):
            return None

    def close(self):
        self.s.close()


TEXT = ("Ann's train came out of the tunnel and the room had moved on: Bob posted the minutes, "
        "Carol asked who brings the projector on Thursday. " * 6).encode()


async def library_clients(st, mport):
    """python3-websockets, the reference client, with each parameter it can offer."""
    F = ClientPerMessageDeflateFactory
    cases = [
        ("default offer", {}, ""),
        ("server_no_context_takeover", {"extensions": [F(server_no_context_takeover=True)]}, ""),
        ("client_no_context_takeover", {"extensions": [F(client_no_context_takeover=True)]}, ""),
        ("both no_context_takeover", {"extensions": [F(server_no_context_takeover=True,
                                                       client_no_context_takeover=True)]}, ""),
        ("server_max_window_bits=10", {"extensions": [F(server_max_window_bits=10)]},
         "; server_max_window_bits=10"),
        ("server_max_window_bits=15", {"extensions": [F(server_max_window_bits=15)]},
         "; server_max_window_bits=15"),
        ("client_max_window_bits=9", {"extensions": [F(client_max_window_bits=9)]}, ""),
    ]
    base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    for name, kw, tail in cases:
        m0 = metrics(mport)
        async with websockets.connect(st.ws_base + "/echo/", **kw) as ws:
            check_eq(ws.response_headers.get("Sec-WebSocket-Extensions"), base + tail,
                     "%s: the answer" % name)
            for i in range(3):
                await ws.send(TEXT.decode() + str(i))
                check_eq(await asyncio.wait_for(ws.recv(), 10), TEXT.decode() + str(i),
                         "%s: a %d-byte message both ways (%d)" % (name, len(TEXT) + 1, i))
            await ws.send(TEXT + b"\x00\xff")
            check_eq(await asyncio.wait_for(ws.recv(), 10), TEXT + b"\x00\xff",
                     "%s: a binary message" % name)
            await ws.send("short")
            check_eq(await asyncio.wait_for(ws.recv(), 10), "short",
                     "%s: a message under the threshold" % name)
        m1 = metrics(mport)
        d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
        check_eq(d('laurel_interface_websocket_compressed_messages_total{direction="out"}'), 4,
                 "%s: 4 messages went compressed, the short one plain" % name)
        check(d('laurel_interface_websocket_compressed_messages_total{direction="in"}') >= 4,
              "%s: the client's messages came compressed" % name)
        wire = d('laurel_interface_websocket_wire_bytes_total{direction="out"}')
        payload = d('laurel_interface_websocket_payload_bytes_total{direction="out"}')
        check(0 < wire < payload / 2, "%s: wire bytes out %d, less than half of the payload %d"
              % (name, wire, payload))
        check_eq(d("laurel_interface_websocket_compression_handshakes_total"), 1,
                 "%s: one handshake agreed on it" % name)
    async with websockets.connect(st.ws_base + "/echo/", compression=None) as ws:
        check_eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None,
                 "no offer: no extension in the answer")
        await ws.send(TEXT.decode())
        check_eq(await asyncio.wait_for(ws.recv(), 10), TEXT.decode(),
                 "no offer: messages flow")


def declined(port):
    """Offers laurel cannot honour are declined: a 101 without the extension."""
    for offer in ["permessage-deflate; server_max_window_bits=8",
                  "permessage-deflate; server_max_window_bits",
                  "permessage-deflate; server_max_window_bits=16",
                  "permessage-deflate; server_max_window_bits=010",
                  "permessage-deflate; client_max_window_bits=7",
                  "permessage-deflate; unknown_parameter",
                  "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                  "permessage-deflate; client_no_context_takeover=1",
                  "x-webkit-deflate-frame",
                  "permessage-deflate; server_max_window_bits=\"8\"",
                  "permessage-deflate; ;;; broken \"",
                  ]:
        c = Raw(port, ext=offer)
        check_eq((c.status, c.ext), (101, None), "declined, not failed: %r" % offer)
        c.send(1, TEXT)
        op, rsv1, data = c.recv()
        check((op, rsv1, data) == (1, False, TEXT), "%r: plain messages flow" % offer)
        c.close()
    # The first acceptable offer of a list wins; quoted values are read.
    for offers, want in [
            ("permessage-deflate; server_max_window_bits=8, permessage-deflate; "
             "client_max_window_bits", ""),
            (["x-foo", "permessage-deflate; server_max_window_bits=\"12\""],
             "; server_max_window_bits=12"),
            ("PerMessage-Deflate ; Client_Max_Window_Bits = 15", ""),
    ]:
        c = Raw(port, ext=offers)
        check_eq(c.ext, "permessage-deflate; server_no_context_takeover; "
                 "client_no_context_takeover" + want, "accepted: %r" % (offers,))
        c.send(1, deflate(TEXT), rsv=4)
        check_eq(c.recv(), (1, True, TEXT), "%r: compressed both ways" % (offers,))
        c.close()


def peak_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def raw_edges(st, port):
    ext = "permessage-deflate; client_max_window_bits"
    c = Raw(port, ext=ext)
    # Whole, then fragmented (RSV1 on the first frame only), then one byte per write.
    c.send(1, deflate(TEXT), rsv=4)
    check_eq(c.recv(), (1, True, TEXT), "a compressed message, echoed compressed")
    z = deflate(TEXT + b"!")
    c.send(1, z[:10], fin=False, rsv=4)
    c.send(0, z[10:40], fin=False)
    c.send(0, z[40:])
    check_eq(c.recv(), (1, True, TEXT + b"!"), "a compressed message in three frames")
    for b in c.frame(1, deflate(TEXT + b"?"), rsv=4):
        c.s.sendall(bytes([b]))
    check_eq(c.recv(), (1, True, TEXT + b"?"), "a compressed frame one byte per write")
    c.send(1, deflate(TEXT + b".", final=True), rsv=4)
    check_eq(c.recv(), (1, True, TEXT + b"."), "a message ending with a final block")
    c.send(2, deflate(bytes(range(256)) * 4), rsv=4)
    check_eq(c.recv(), (2, True, bytes(range(256)) * 4), "a compressed binary message")
    c.send(1, deflate(b"tiny"), rsv=4)
    check_eq(c.recv(), (1, False, b"tiny"), "a short message comes back plain")
    c.send(1, b"plain " * 40)
    check_eq(c.recv(), (1, True, b"plain " * 40), "a plain message, echoed compressed")
    # Exactly --ws-max-message inflated.
    big = (TEXT * (MAX // len(TEXT) + 1))[:MAX]
    c.send(1, deflate(big), rsv=4)
    check_eq(c.recv(), (1, True, big), "exactly --ws-max-message (%d) inflated" % MAX)
    c.close()

    def closes(what, code, *frames, ext=ext):
        c = Raw(port, ext=ext)
        for f in frames:
            c.s.sendall(f(c))
        check_eq(c.close_code(), code, what)
        c.close()

    closes("one byte over --ws-max-message inflated: 1009", 1009,
           lambda c: c.frame(1, deflate(big + b"x"), rsv=4))
    pid = [p for p in st.procs if p.name == "interface1"][0].pid
    before = peak_kib(pid)
    bomb = deflate(bytes(60 << 20))
    check(len(bomb) < MAX, "the bomb is %d bytes compressed" % len(bomb))
    t0 = time.monotonic()
    closes("a 60 MiB bomb: 1009", 1009, lambda c: c.frame(2, bomb, rsv=4))
    grew = peak_kib(pid) - before
    check(grew < 8 * 1024, "the interface's peak memory grew by %d KiB (< 8 MiB): the bomb "
          "was not inflated whole (%.2f s)" % (grew, time.monotonic() - t0))
    closes("bad deflate data: 1007", 1007, lambda c: c.frame(1, b"\xff\xfe\xfd\xfc", rsv=4))
    closes("data after a final block: 1007", 1007,
           lambda c: c.frame(1, deflate(TEXT, final=True) + b"\x01\x02", rsv=4))
    closes("compressed invalid UTF-8: 1007", 1007,
           lambda c: c.frame(1, deflate(b"ok \xc3\x28 not"), rsv=4))
    closes("RSV1 on a continuation: 1002", 1002,
           lambda c: c.frame(1, deflate(TEXT)[:5], fin=False, rsv=4),
           lambda c: c.frame(0, deflate(TEXT)[5:], rsv=4))
    closes("RSV1 on a ping: 1002", 1002, lambda c: c.frame(9, b"x", rsv=4))
    closes("RSV2: 1002", 1002, lambda c: c.frame(1, b"x", rsv=2))
    closes("RSV1 without the extension: 1002", 1002,
           lambda c: c.frame(1, deflate(TEXT), rsv=4), ext=None)


def compression_off(st):
    port = free_port()
    st._start("interface-off", [os.path.join(st.build, "interface", "laurel-interface"), "-b",
                                "127.0.0.1", "-p", str(port), "--layer", st.layer,
                                "--ws-compression", "off"])
    check(wait_port(port), "an interface with --ws-compression off starts")
    c = Raw(port, ext="permessage-deflate")
    check_eq((c.status, c.ext), (101, None), "--ws-compression off: the offer is declined")
    c.send(1, TEXT)
    check_eq(c.recv(), (1, False, TEXT), "--ws-compression off: plain messages")
    c.send(1, deflate(TEXT), rsv=4)
    check_eq(c.close_code(), 1002, "--ws-compression off: RSV1 is a protocol error")
    c.close()
    r = subprocess.run([os.path.join(st.build, "interface", "laurel-interface"),
                        "--ws-compression", "maybe"], capture_output=True, text=True, timeout=5)
    check(r.returncode == 2 and "--ws-compression takes on or off" in r.stderr,
          "--ws-compression maybe is refused clearly", r.stderr)


def broadcast(st, mport):
    m0 = metrics(mport)
    ws = os.path.join(st.build, "tests", "bench", "bench-ws")
    r = subprocess.run([ws, "fanout", "--port", str(st.port), "--members", str(MEMBERS),
                        "--room", "deflate", "--broadcasts", str(BROADCASTS), "--gap-ms", "100",
                        "--size", "600", "--deflate", "0.5"],
                       capture_output=True, text=True, timeout=150)
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    res = dict(kv.split("=") for kv in line[0].split()[1:]) if line else {}
    print("bench-ws:", line, r.stderr[-500:], flush=True)
    check_eq(int(res.get("members", -1)), MEMBERS, "every member connected")
    check_eq(int(res.get("deflate_members", -1)), MEMBERS // 2,
             "half the members negotiated deflate")
    check_eq((int(res.get("complete", -1)), int(res.get("lost", -1))), (BROADCASTS, 0),
             "every broadcast reached every member")
    check_eq(int(res.get("compressed_deliveries", -1)), BROADCASTS * (MEMBERS // 2),
             "the deflate members got every message compressed")
    check_eq(int(res.get("inflate_errors", -1)), 0, "every compressed message inflated")
    m1 = metrics(mport)
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
    check_eq(d("laurel_interface_websocket_compressions_total"), BROADCASTS,
             "the interface compressed each broadcast once")
    check_eq(d('laurel_interface_websocket_compressed_messages_total{direction="out"}'),
             BROADCASTS * (MEMBERS // 2), "and sent it compressed to each deflate member")
    print("info: %s wire bytes per delivery (half compressed, 600-byte messages)"
          % res.get("wire_bytes_per_delivery"), flush=True)


def group_left(st, group):
    out = subprocess.run(["redis-cli", "-p", str(st.redis_port), "--scan", "--pattern",
                          "*%s*" % group], capture_output=True, text=True).stdout.split()
    n = 0
    for k in out:
        t = subprocess.run(["redis-cli", "-p", str(st.redis_port), "TYPE", k],
                           capture_output=True, text=True).stdout.strip()
        if t == "zset":
            n += int(subprocess.run(["redis-cli", "-p", str(st.redis_port), "ZCARD", k],
                                    capture_output=True, text=True).stdout.strip() or 0)
    return n


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = os.path.join(build_dir(), "tests", "integration", "worker", "liblaurel-testapp.so")
    mport = free_port()
    st = Stack([app], workers=2, timeout=240)
    st.interface_args = ["--ws-max-message", str(MAX), "--metrics", "127.0.0.1:%d" % mport,
                         "--capacity", "1000"]
    with st:
        asyncio.run(library_clients(st, mport))
        declined(st.port)
        raw_edges(st, st.port)
        compression_off(st)
        broadcast(st, mport)
        end = time.monotonic() + 30
        while time.monotonic() < end and group_left(st, "chat-deflate"):
            time.sleep(0.5)
        check_eq(group_left(st, "chat-deflate"), 0, "no member left in the room's group")
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport).read()
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
        check(r.returncode == 0, "promtool check metrics accepts the endpoint",
              r.stdout[-500:] + r.stderr[-500:])
    return done()


if __name__ == "__main__":
    sys.exit(main())
