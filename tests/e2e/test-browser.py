#!/usr/bin/python3
"""The chat page in a real browser: starts redis-server, laurel-interface and two laurel-worker
processes running the chat example, then browser-chat.mjs (node + playwright-core driving
Debian's /usr/bin/chromium) opens the page twice and checks what a person would see, and that
Chromium and laurel agree on permessage-deflate and messages go compressed both ways (the
interface's /metrics). Screenshots
go to $LAUREL_SCREENSHOT.png, -taken.png and -left.png (default /tmp/chat).

Needs: Debian packages chromium and nodejs; `npm install --no-save playwright-core` in this
directory (tests/e2e/node_modules).

Usage: test-browser.py BUILD_DIR"""
import os
import subprocess
import sys

from harness import Stack, check, done, free_port, run_node

HERE = os.path.dirname(os.path.abspath(__file__))


def main(st):
    missing = [what for what, ok in [
        ("/usr/bin/chromium (apt-get install chromium)", os.access("/usr/bin/chromium", os.X_OK)),
        ("node (apt-get install nodejs)", subprocess.run(["which", "node"],
                                                         capture_output=True).returncode == 0),
        ("playwright-core (cd tests/e2e && npm install --no-save playwright-core)",
         os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")))] if not ok]
    if missing:
        check(False, "browser test prerequisites", "missing " + ", ".join(missing))
        return
    shots = os.environ.get("LAUREL_SCREENSHOT", "/tmp/chat")
    args = [st.base, os.path.join(st.build, "tool", "laurel"), st.layer, shots]
    if not st.runserver:
        args.append("http://127.0.0.1:%d/metrics" % st.metrics_port)
    run_node(os.path.join(HERE, "browser-chat.mjs"), args, 45, HERE)


if __name__ == "__main__":
    st = Stack("chat", workers=2)
    st.metrics_port = free_port()
    st.interface_args = ["--metrics", "127.0.0.1:%d" % st.metrics_port]
    with st:
        main(st)
    sys.exit(done())
