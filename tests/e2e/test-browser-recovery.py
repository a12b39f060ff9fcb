#!/usr/bin/python3
"""Reconnect without loss in a real browser (docs/recovery.md): redis-server, two
laurel-interfaces and two laurel-workers running the chat example with the rooms' history
(--group-history 'chat-*=200/600'), then browser-recovery.mjs (headless Chromium): ann's page
goes offline (its socket cut, the network down) while bob sends, and comes back showing every
message once and in order; her interface is restarted while bob sends, likewise; a reloaded page
shows what came while it reloaded. Screenshots: $LAUREL_SCREENSHOT-recovered.png and
-restarted.png (default /tmp/chat).

Usage: test-browser-recovery.py BUILD_DIR"""
import json
import os
import sys

from harness import Stack, check, done, run_node

HERE = os.path.dirname(os.path.abspath(__file__))


def main(st):
    if not (os.access("/usr/bin/chromium", os.X_OK)
            and os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core"))):
        check(False, "browser test prerequisites (chromium, playwright-core: scripts/deps)")
        return
    iface = next(p for p in st.procs if p.name == "interface1")
    info = json.dumps({"pid": iface.pid, "argv": iface.args, "cwd": st.dir})
    shots = os.environ.get("LAUREL_SCREENSHOT", "/tmp/chat")
    run_node(os.path.join(HERE, "browser-recovery.mjs"),
             [st.base, "http://127.0.0.1:%d" % st.ports[1], info, shots], 90, HERE)
    # What the restarted interface logged (the original's log is in the stack's own).
    path = os.path.join(st.dir, "interface1-restarted.log")
    if os.path.exists(path):
        text = open(path, errors="replace").read()
        check("AddressSanitizer" not in text and "runtime error:" not in text,
              "no sanitizer report from the restarted interface", text[-2000:])


if __name__ == "__main__":
    with Stack([("chat", ["--group-history", "chat-*=200/600"])], workers=2, interfaces=2,
               timeout=110) as st:
        main(st)
    sys.exit(done())
