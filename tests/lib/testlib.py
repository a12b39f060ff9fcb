"""What the Python tests of every suite share: value-printing checks that end with "N passed,
N failed", free ports and waiting for one to answer.

A test imports it with tests/lib on its path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from testlib import check, check_eq, done  # noqa: E402

(tests/e2e/harness.py does, and hands on check, check_eq, done, free_port, short and wait_port to
the tests that import those from it.) The counts are this module's passed and failed."""
import socket
import time

passed = 0
failed = 0


# --- Checks ------------------------------------------------------------------------------------


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


# --- Ports -------------------------------------------------------------------------------------


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
