#!/usr/bin/python3
"""Redis traffic over TLS with Debian's stunnel4, as deploy/stunnel/ ships it, and an ACL user.

Usage: test-deploy-tls.py SOURCE_ROOT BUILD_DIR

On loopback, in a temporary directory: a CA, a server certificate for "redis-0.test", a client
certificate, and a second CA with a client certificate of its own (made with openssl); a
redis-server bound to 127.0.0.1 with requirepass and an ACL user "laurel"; stunnel4 in front of it
(deploy/stunnel/redis-server.conf, mutual TLS) and stunnel4 on the laurel side
(deploy/stunnel/redis-client.conf, one local port); the echo example in laurel-interface and
laurel-worker with --layer redis://laurel:PASSWORD@127.0.0.1:LOCAL_PORT. Checked: HTTP and
WebSocket echo work through the tunnel and Redis sees laurel's commands as user "laurel"; the TLS
port refuses plain Redis commands and clients without a certificate of the CA (a tunnel with the
other CA's certificate: `laurel stats` fails, naming the server); the server-side stunnel killed
with -9 is an outage laurel rides out (503 at once), and it works again within 5 s of stunnel's
restart, nothing restarted. Prints "N passed, N failed"; about 15 s."""
import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import websockets  # noqa: E402

import testlib  # noqa: E402
from testlib import check, check_eq, done, free_port, stop, wait_port  # noqa: E402

SRC, BUILD = (os.path.abspath(a) for a in sys.argv[1:3])
PW, ADMIN_PW = "tls-pw-4711", "admin-pw-0815"
TMP = tempfile.mkdtemp(prefix="laurel-tls-")
PROCS = []


def run(*argv):
    subprocess.run(argv, check=True, capture_output=True, cwd=TMP)


def make_certs():
    """ca.crt, server.crt/key (redis-0.test), client.crt/key; rogue-ca + rogue-client."""
    for ca in ("ca", "rogue-ca"):
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % ca, "-keyout", ca + ".key", "-out", ca + ".crt")
    for name, ca, san in (("server", "ca", "DNS:redis-0.test"), ("client", "ca", None),
                          ("rogue-client", "rogue-ca", None)):
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", name + ".key", "-out", name + ".csr")
        ext = os.path.join(TMP, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % san if san else "extendedKeyUsage=clientAuth\n")
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey",
            ca + ".key", "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", name + ".crt")
    return {k: os.path.join(TMP, k) for k in os.listdir(TMP)}


def render(template, out, **values):
    argv = [os.path.join(SRC, "deploy", "render"), os.path.join(SRC, "deploy", template)]
    argv += ["%s=%s" % kv for kv in values.items()]
    with open(os.path.join(TMP, out), "w") as f:
        subprocess.run(argv, stdout=f, check=True)
    return os.path.join(TMP, out)


def start(name, argv):
    log = open(os.path.join(TMP, name + ".log"), "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=TMP)
    p.name = name
    PROCS.append(p)
    return p


def read(name):
    return testlib.read(os.path.join(TMP, name + ".log"))


def get(port, timeout=3):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/hello" % port, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


async def echo(port):
    async with websockets.connect("ws://127.0.0.1:%d/echo/" % port, open_timeout=5) as ws:
        await ws.send("over tls")
        return await asyncio.wait_for(ws.recv(), 5)


def admin(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", ADMIN_PW]
                       + list(args), capture_output=True, text=True, timeout=5)
    return r.stdout.strip()


def main():
    f = make_certs()
    redis_port, tls_port, local_port, rogue_port = (free_port() for _ in range(4))
    http_port = free_port()
    start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", TMP, "--requirepass", ADMIN_PW,
                    "--user", "laurel", "on", ">" + PW, "~*", "&*", "+@all"])
    check(wait_port(redis_port), "redis-server started")
    server = render("stunnel/redis-server.conf", "stunnel-server.conf", RUN_DIR=TMP,
                    TLS_LISTEN="127.0.0.1:%d" % tls_port, REDIS="127.0.0.1:%d" % redis_port,
                    CERT=f["server.crt"], KEY=f["server.key"], CA=f["ca.crt"])
    client = render("stunnel/redis-client.conf", "stunnel-client.conf", RUN_DIR=TMP,
                    NAME="redis-0", LOCAL="127.0.0.1:%d" % local_port,
                    SERVER="127.0.0.1:%d" % tls_port, SERVER_NAME="redis-0.test",
                    CERT=f["client.crt"], KEY=f["client.key"], CA=f["ca.crt"])
    rogue = render("stunnel/redis-client.conf", "stunnel-rogue.conf", RUN_DIR=TMP,
                   NAME="rogue", LOCAL="127.0.0.1:%d" % rogue_port,
                   SERVER="127.0.0.1:%d" % tls_port, SERVER_NAME="redis-0.test",
                   CERT=f["rogue-client.crt"], KEY=f["rogue-client.key"], CA=f["ca.crt"])
    stunnel_server = start("stunnel-server", ["stunnel4", server])
    start("stunnel-client", ["stunnel4", client])
    start("stunnel-rogue", ["stunnel4", rogue])
    for p in (tls_port, local_port, rogue_port):
        check(wait_port(p), "stunnel listens on %d" % p)

    layer = "redis://laurel:%s@127.0.0.1:%d" % (PW, local_port)
    tool = os.path.join(BUILD, "tool", "laurel")
    app = os.path.join(BUILD, "examples", "echo", "libecho.so")
    laurel = [
        start("worker", [os.path.join(BUILD, "worker", "laurel-worker"), "--app", app,
                         "--layer", layer, "--processes", "1"]),
        start("interface", [os.path.join(BUILD, "interface", "laurel-interface"), "-b",
                            "127.0.0.1", "-p", str(http_port), "--layer", layer]),
    ]
    check(wait_port(http_port), "laurel-interface started")
    end = time.monotonic() + 10
    while time.monotonic() < end and admin(redis_port, "CLIENT", "LIST").count("cmd=blpop") < 2:
        time.sleep(0.05)

    # Through the tunnel, as the ACL user.
    check_eq(get(http_port), 200, "GET /hello with Redis behind stunnel")
    check_eq(asyncio.run(echo(http_port)), "over tls", "WebSocket echo with Redis behind stunnel")
    clients = admin(redis_port, "CLIENT", "LIST")
    check(clients.count("user=laurel") >= 3, "Redis serves laurel's connections as user laurel",
          clients)
    r = subprocess.run([tool, "--layer", layer, "stats"], capture_output=True, text=True,
                       timeout=10)
    check_eq(r.returncode, 0, "laurel stats through the tunnel")

    # The TLS port: no plain Redis, no client without a certificate of the CA.
    s = socket.create_connection(("127.0.0.1", tls_port), timeout=3)
    s.sendall(b"PING\r\n")
    try:
        answer = s.recv(64)
    except OSError:
        answer = b""
    s.close()
    check(not answer.startswith(b"+PONG") and b"NOAUTH" not in answer,
          "the TLS port does not speak plain Redis", answer)
    ctx = ssl.create_default_context(cafile=f["ca.crt"])
    ctx.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="redis-0.test") as t:
                t.sendall(b"PING\r\n")
                got = t.recv(64)
    except (ssl.SSLError, OSError) as e:
        got = repr(e).encode()
    check(b"PONG" not in got and b"NOAUTH" not in got,
          "a TLS client without a certificate is refused", got)
    r = subprocess.run([tool, "--layer", "redis://laurel:%s@127.0.0.1:%d" % (PW, rogue_port),
                        "stats"], capture_output=True, text=True, timeout=20)
    check(r.returncode != 0 and "127.0.0.1:%d" % rogue_port in r.stderr,
          "a client certificate of another CA gets nowhere (laurel stats fails, naming the "
          "server)", (r.returncode, r.stderr))
    check(PW not in r.stderr, "the password is not printed")

    # The server-side stunnel dies: an outage laurel rides out.
    stunnel_server.kill()
    stunnel_server.wait()
    time.sleep(0.5)
    t0 = time.monotonic()
    status = get(http_port)
    check(status == 503 and time.monotonic() - t0 < 2,
          "with the tunnel down: 503 at once", (status, time.monotonic() - t0))
    start("stunnel-server-2", ["stunnel4", server])
    check(wait_port(tls_port), "stunnel restarted")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and get(http_port) != 200:
        time.sleep(0.05)
    back = time.monotonic() - t0
    print("info: HTTP 200 again %.2f s after the server-side stunnel's restart" % back,
          flush=True)
    check(back < 5, "laurel works again within 5 s of the tunnel's return")
    check_eq(asyncio.run(echo(http_port)), "over tls", "WebSocket echo after the tunnel's return")
    check(all(p.poll() is None for p in laurel), "no laurel process died")
    logs = read("interface") + read("worker")
    check(PW not in logs, "no log names the password")


if __name__ == "__main__":
    if not shutil.which("stunnel4") or not shutil.which("openssl"):
        print("SKIP: stunnel4 or openssl is missing (scripts/deps installs stunnel4)")
        sys.exit(77)
    try:
        main()
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        check(False, "the test ran to its end", repr(e))
    finally:
        for p in reversed(PROCS):
            stop(p)
        if testlib.failed:
            for p in PROCS:
                print("--- %s\n%s" % (p.name, read(p.name)[-2000:]))
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(done())
