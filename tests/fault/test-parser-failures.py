#!/usr/bin/python3
"""Fault test: a request that the interface answers from inside its HTTP parser's callbacks — the
channel layer refused it at once — must never leave a callback with a freed request (issue: a
chunked body whose first part failed crashed laurel-interface with SIGSEGV on the next chunk).
Run under ASan in CI, so a use-after-free fails it even where it would not crash.

1. Redis stopped (the layer is down): a chunked body of many small chunks in one write, past
   --body-chunk (fails in on_body, then more chunks follow in the same buffer); a large
   Content-Length body; a small body (fails in on_complete); a WebSocket handshake. Each is
   answered 503 and the interface lives on.
2. Redis up, --body-chunk 2M (above the layer's 1 MiB message limit): a 3 MB chunked body in 1,000-
   byte chunks is answered 413 ("Request too large.") when its first part goes, and the rest of
   the chunks in the buffer are dropped; a 1.5 MB body is 413 too.

Usage: test-parser-failures.py BUILD_DIR"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
os.environ.pop("LAUREL_E2E_MODE", None)

from harness import Stack, check, check_eq, done  # noqa: E402
from testlib import recv_until  # noqa: E402
from faults import COUNT_KEYS_LUA, redis  # noqa: E402

LOG_LINES_MAX = 20  # lines the interface may write about all the cases of a scenario


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def log_lines(st):
    with open(os.path.join(st.dir, "interface1.log"), errors="replace") as f:
        return sum(1 for _ in f)


def chunked(total, size):
    out, left = [], total
    while left:
        n = min(size, left)
        out.append(b"%x\r\n%s\r\n" % (n, b"a" * n))
        left -= n
    return b"".join(out) + b"0\r\n\r\n"


def ask(port, data):
    """Sends data in one write (as far as the socket takes it) and returns the status line, or
    what happened instead."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the interface may answer and close before it has read everything
        got = recv_until(s, b"\r\n")
        return got.split(b"\r\n")[0].decode(errors="replace") or "(closed)"
    except OSError as e:
        return "(%s)" % e.__class__.__name__
    finally:
        s.close()


def alive(st):
    iface = next(p for p in st.procs if p.name == "interface1")
    return iface.poll() is None


HEAD = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

if __name__ == "__main__":
    print("--- 1: the layer down", flush=True)
    st = Stack("echo", workers=0, timeout=60)
    st.interface_args = ["--body-chunk", "1024"]
    with st:
        server = next(p for p in st.procs if p.name == "redis")
        server.kill()
        server.wait()
        time.sleep(1.0)  # the interface notices (its reply reader's connection closes)
        iface = next(p for p in st.procs if p.name == "interface1")
        lines0, t0, w0 = log_lines(st), ticks(iface.pid), time.monotonic()
        cases = [
            ("chunked body, 40 chunks of 1,500 bytes in one write",
             HEAD + chunked(60000, 1500)),
            ("Content-Length body of 6,000 bytes",
             b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 6000\r\n\r\n" + b"a" * 6000),
            ("small body (fails when the request completes)",
             b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
            ("WebSocket handshake",
             b"GET /ws/ HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ]
        for what, data in cases:
            got = ask(st.port, data)
            print("  %s: %s" % (what, got))
            check_eq(got.split(" ", 1)[-1][:3], "503", "1: %s answered" % what)
            check(alive(st), "1: the interface lives on after: %s" % what)
        # Pipelined behind a refused one: the connection closes after the answer, nothing crashes.
        got = ask(st.port, HEAD + chunked(5000, 1000) + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        check_eq(got.split(" ", 1)[-1][:3], "503", "1: refused request with another behind it")
        check(alive(st), "1: the interface lives on after a pipelined pair")
        time.sleep(2.0)  # the outage goes on: the interface must idle, not spin
        cpu = (ticks(iface.pid) - t0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - w0)
        grown = log_lines(st) - lines0
        print("  interface during the outage: %.1f%% of a core, %d log lines" % (100 * cpu, grown))
        check(cpu < 0.05, "1: the interface stays under 5%% of a core while the layer is down",
              "%.3f" % cpu)
        check(grown <= LOG_LINES_MAX, "1: the interface's log is not flooded", grown)

    print("--- 2: --body-chunk above the layer's message limit", flush=True)
    st = Stack("echo", workers=0, timeout=60)
    st.interface_args = ["--body-chunk", "2M"]
    with st:
        got = ask(st.port, HEAD + chunked(3 * 1024 * 1024, 1000))
        print("  3 MB chunked body in 1,000-byte chunks: %s" % got)
        check(got.startswith("HTTP/1.1 413 ") or got == "(ConnectionResetError)",
              "2: a streamed body whose first part is too large: 413 (or the answer was lost "
              "to a reset while sending)", got)
        check(alive(st), "2: the interface lives on after a streamed body too large")
        got = ask(st.port, b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1500000\r\n\r\n"
                  + b"a" * 1500000)
        print("  1.5 MB body: %s" % got)
        check(got.startswith("HTTP/1.1 413 ") or got == "(ConnectionResetError)",
              "2: a whole body above the message limit: 413 (or the answer was lost to a "
              "reset while sending)", got)
        check(alive(st), "2: the interface lives on after a body above the message limit")
        # Nothing refused may be left in Redis: no request queued, no body key, no body channel.
        left = {q: redis(st, "EVAL", COUNT_KEYS_LUA, 0, q) for q in
                ("asgi:http.request*", "asgi:[0-9a-f]*")}
        print("  left in Redis: %r" % left)
        check_eq(left, {"asgi:http.request*": "0", "asgi:[0-9a-f]*": "0"},
                 "2: queues and body keys left in Redis after the refusals")
    sys.exit(done())
