#!/usr/bin/python3
"""The chat page in a real browser: starts redis-server, laurel-interface and two laurel-worker
processes running the chat example, then browser-chat.mjs (node + playwright-core driving
Debian's /usr/bin/chromium) opens the page twice and checks what a person would see. Screenshots
go to $LAUREL_SCREENSHOT.png, -taken.png and -left.png (default /tmp/chat).

Needs: Debian packages chromium and nodejs; `npm install --no-save playwright-core` in this
directory (tests/e2e/node_modules).

Usage: test-browser.py BUILD_DIR"""
import os
import subprocess
import sys

from harness import Stack, check, done, run_node

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
    run_node(os.path.join(HERE, "browser-chat.mjs"),
             [st.base, os.path.join(st.build, "tool", "laurel"), st.layer, shots], 45, HERE)


if __name__ == "__main__":
    with Stack("chat", workers=2) as st:
        main(st)
    sys.exit(done())
