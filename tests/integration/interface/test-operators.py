#!/usr/bin/python3
"""laurel-interface for operators: --user/--group drop root once the sockets are bound (and a root
start without them warns), and a password in a --layer URL does not show in ps or
/proc/PID/cmdline, while the interface still authenticates with it.

Usage: test-operators.py INTERFACE"""
import os
import pwd
import grp
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e"))
from harness import check, done, free_port, wait_port  # noqa: E402

IFACE = sys.argv[1]
PASSWORD = "s3cret-Pw"


def status_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids


def http_status(port, path="/x"):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    tmp = tempfile.mkdtemp(prefix="laurel-operators-")
    os.chmod(tmp, 0o755)
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--requirepass", PASSWORD],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [redis]
    try:
        wait_port(rport)
        url = "redis://:%s@127.0.0.1:%d" % (PASSWORD, rport)
        root = os.geteuid() == 0

        # 1. The password is not in ps, and it is used.
        port = free_port()
        args = [IFACE, "-p", str(port), "--layer", url, "-t", "1"]
        if root:
            nobody = pwd.getpwnam("nobody")
            group = grp.getgrgid(nobody.pw_gid).gr_name
            args += ["--user", "nobody"]
        log1 = open(os.path.join(tmp, "if1.log"), "w")
        p1 = subprocess.Popen(args, stdout=log1, stderr=subprocess.STDOUT)
        procs.append(p1)
        check(wait_port(port), "the interface listens")
        time.sleep(0.3)
        with open("/proc/%d/cmdline" % p1.pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        check(PASSWORD not in cmdline, "/proc/PID/cmdline does not show the password: %s"
              % cmdline.strip())
        check("redis://:%s@127.0.0.1" % ("*" * len(PASSWORD)) in cmdline,
              "the URL shows with the password starred")
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(p1.pid)], capture_output=True,
                            text=True).stdout
        check(ps and PASSWORD not in ps, "ps does not show the password")
        status = http_status(port)
        check(status == 503,
              "a request reached Redis with the password (no worker: 503 after -t 1): %s"
              % status)
        llen = subprocess.run(["redis-cli", "-p", str(rport), "-a", PASSWORD, "--no-auth-warning",
                               "LLEN", "asgi:http.request"], capture_output=True, text=True)
        check(llen.stdout.strip() == "1", "the http.request is in Redis: LLEN %s"
              % llen.stdout.strip())

        # 2. --user: the process runs as that user and group once bound.
        if root:
            ids = status_ids(p1.pid)
            check(ids["Uid"] == [str(nobody.pw_uid)] * 4,
                  "--user nobody: every uid is nobody's (%s)" % ids["Uid"])
            check(ids["Gid"] == [str(nobody.pw_gid)] * 4,
                  "--user nobody: every gid is its group %s (%s)" % (group, ids["Gid"]))
            check("0" not in ids.get("Groups", []), "no supplementary root group")
            # Without --user, as root: a warning.
            port2 = free_port()
            log2 = open(os.path.join(tmp, "if2.log"), "w")
            p2 = subprocess.Popen([IFACE, "-p", str(port2), "--layer", url], stdout=log2,
                                  stderr=subprocess.STDOUT)
            procs.append(p2)
            check(wait_port(port2), "a second interface, as root, listens")
            time.sleep(0.3)
            text = open(os.path.join(tmp, "if2.log")).read()
            check("running as root" in text, "as root without --user it warns")
            # A user that does not exist: refused at start.
            r = subprocess.run([IFACE, "-p", str(free_port()), "--layer", url, "--user",
                                "no-such-user-x"], capture_output=True, text=True, timeout=10)
            check(r.returncode == 1 and "no such user" in r.stderr,
                  "--user no-such-user-x: exit 1 and says why (%d, %s)"
                  % (r.returncode, r.stderr.strip()))
            # --group alone.
            port3 = free_port()
            log3 = open(os.path.join(tmp, "if3.log"), "w")
            p3 = subprocess.Popen([IFACE, "-p", str(port3), "--layer", url, "--group",
                                   group], stdout=log3, stderr=subprocess.STDOUT)
            procs.append(p3)
            check(wait_port(port3), "--group alone: it listens")
            time.sleep(0.2)
            ids = status_ids(p3.pid)
            check(ids["Gid"] == [str(nobody.pw_gid)] * 4 and ids["Uid"][0] == "0",
                  "--group %s: gid switched, uid kept (%s / %s)" % (group, ids["Gid"],
                                                                    ids["Uid"]))
        else:
            r = subprocess.run([IFACE, "-p", str(free_port()), "--layer", url, "--user", "0"],
                               capture_output=True, text=True, timeout=10)
            check(r.returncode == 1 and "root" in r.stderr,
                  "not root: --user another user is refused")
        # Every interface stops cleanly on SIGTERM (also after dropping privileges).
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
            check(p.wait(timeout=15) == 0, "SIGTERM: exit 0")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


main()
sys.exit(done())
