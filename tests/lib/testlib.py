"""What the Python tests of every suite share: value-printing checks that end with "N passed,
N failed", free ports and waiting with a deadline, stopping child processes, HTTP and WebSocket
client pieces, and the Prometheus text format.

A test imports it with tests/lib on its path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from testlib import check, check_eq, done  # noqa: E402

(tests/e2e/harness.py does, and hands on check, check_eq, done, free_port, short and wait_port to
the tests that import those from it.) The counts are this module's passed and failed."""
import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

passed = 0
failed = 0


# --- Checks ------------------------------------------------------------------------------------


def log(msg):
    print(msg, flush=True)


def short(v, limit=300):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "... (%d characters)" % len(r)


def check(cond, what, detail=None):
    """Counts a check; a failed one prints what was checked and what was seen."""
    global passed, failed
    what = what if len(what) <= 300 else what[:300] + "..."
    if cond:
        passed += 1
        print("ok   " + what, flush=True)
    else:
        failed += 1
        print("FAIL " + what + ("" if detail is None else ": got " + short(detail)), flush=True)
    return cond


def check_eq(got, want, what):
    return check(got == want, "%s == %s" % (what, short(want, 200)), got)


def done():
    """Prints the counts; returns the exit status (1 if a check failed or none ran)."""
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or passed == 0 else 0


# --- Ports, waiting, processes -----------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    """True once something accepts connections on the loopback port, False after timeout s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for(pred, timeout, step=0.02):
    """Calls pred until it returns something true or timeout s pass; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


async def await_for(pred, timeout, step=0.02):
    """wait_for in a coroutine: the event loop runs between the calls."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        await asyncio.sleep(step)


def read(path):
    """The text of a file (undecodable bytes replaced), "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop(p, sig=signal.SIGTERM, timeout=10):
    """Stops a subprocess.Popen if it still runs: sig, then SIGKILL after timeout s. Returns its
    exit status."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


# --- Clients -----------------------------------------------------------------------------------


def fetch(url, data=None, timeout=5):
    """(status, body text) of a request; errors with a status are returned too, others as
    (exception name, "")."""
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return type(e).__name__, ""


def recv_until(s, marker):
    """Reads from socket s until what came holds marker or the peer closes; returns it all."""
    got = b""
    while marker not in got:
        part = s.recv(4096)
        if not part:
            break
        got += part
    return got


async def recv_json(ws, timeout=5):
    """The next frame on a websockets connection, parsed as JSON."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def silent(ws, seconds=0.3):
    """True if nothing arrives on ws within seconds (what does is printed)."""
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    print("  unexpected frame: %s" % frame)
    return False


async def chat_join(url, name, timeout=10, **connect):
    """Joins a room of the chat example as name (url carries it): waits for the join frame
    naming name. Returns ("joined", ws), or (what happened instead, None) with the connection
    closed: "handshake: <exception>", the close code after an error frame, "closed <code>" or
    "no join frame". connect: more websockets.connect arguments."""
    import websockets
    try:
        ws = await asyncio.wait_for(websockets.connect(url, ping_interval=None, close_timeout=2,
                                                       **connect), timeout)
    except Exception as e:
        return "handshake: %s" % type(e).__name__, None
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            frame = json.loads(await asyncio.wait_for(ws.recv(),
                                                      max(0.1, end - time.monotonic())))
            if frame.get("type") == "join" and frame.get("user") == name:
                return "joined", ws
            if frame.get("type") == "error":
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                except websockets.ConnectionClosed:
                    pass
                await ws.close()
                return (str(ws.close_code) if ws.close_code else repr(frame)), None
        await ws.close()
        return "no join frame", None
    except websockets.ConnectionClosed:
        return "closed %s" % ws.close_code, None
    except asyncio.TimeoutError:
        await ws.close()
        return "no join frame", None


# --- Prometheus --------------------------------------------------------------------------------


def parse_exposition(text):
    """{'name{labels}': value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out
