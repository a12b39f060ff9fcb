#!/usr/bin/python3
"""Memory of idle WebSockets: opens N (default 10,000) WebSockets to one laurel-interface, lets
them sit idle, and prints the interface's VmRSS before and after and the KiB per connection.
A benchmark, not a test: it prints numbers.

Usage: ws-idle.py INTERFACE RESPONDER [N]

Starts its own redis-server on a free port in a temporary directory, the test responder (which
accepts every WebSocket) and laurel-interface, and stops them at the end. Connections come from
127.0.0.1; the open-files limit is raised to its hard limit for this process and its children.
"""

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from testlib import free_port, stop, wait_port  # noqa: E402

INTERFACE, RESPONDER = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
BATCH = 200
HANDSHAKE = (b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


async def open_ws(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(HANDSHAKE)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 101 "):
        raise RuntimeError("handshake refused: %r" % head[:60])
    return r, w


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < N + 100:
        print("open-files hard limit %d is too low for %d connections" % (hard, N))
        return 1
    tmp = tempfile.mkdtemp(prefix="laurel-ws-idle-")
    rport, iport = free_port(), free_port()
    procs = []
    logs = []

    def start(name, argv, **kw):
        f = open(os.path.join(tmp, name + ".log"), "wb")
        logs.append(f)
        p = subprocess.Popen(argv, stdout=kw.get("stdout", f), stderr=f)
        procs.append(p)
        return p

    conns = []
    try:
        os.mkdir(os.path.join(tmp, "redis"))
        start("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir",
                        os.path.join(tmp, "redis"), "--save", "", "--appendonly", "no"])
        if not wait_port(rport, 10):
            raise RuntimeError("redis-server did not start")
        resp = start("responder", [RESPONDER, "--port", str(rport), "--websocket"],
                     stdout=subprocess.PIPE)
        if b"ready" not in resp.stdout.readline():
            raise RuntimeError("responder did not start")
        iface = start("iface", [INTERFACE, "-p", str(iport), "--layer",
                                "redis://127.0.0.1:%d" % rport, "-v", "0",
                                "--capacity", "100000"])
        if not wait_port(iport, 10):
            raise RuntimeError("laurel-interface did not start")
        # Warm up: one WebSocket through the whole path, then closed.
        r, w = await open_ws(iport)
        w.close()
        await asyncio.sleep(0.5)
        before = rss_kib(iface.pid)
        t0 = time.monotonic()
        for i in range(0, N, BATCH):
            conns += await asyncio.gather(*[open_ws(iport) for _ in range(min(BATCH, N - i))])
        dt = time.monotonic() - t0
        await asyncio.sleep(2)  # idle
        after = rss_kib(iface.pid)
        if iface.poll() is not None:
            raise RuntimeError("laurel-interface died")
        print("%d idle WebSockets opened in %.1f s" % (len(conns), dt))
        print("laurel-interface VmRSS: %d KiB before, %d KiB after" % (before, after))
        print("%.2f KiB per connection" % ((after - before) / len(conns)))
        return 0
    finally:
        for _, w in conns:
            w.close()
        for p in reversed(procs):
            stop(p)
        for f in logs:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
