// Reconnect without loss in a real browser (docs/recovery.md): two chat pages in headless
// Chromium (Debian's, driven by playwright-core), the rooms with a history. Run by
// test-browser-recovery.py, which starts the servers:
//   node browser-recovery.mjs BASE1 BASE2 INTERFACE1_JSON SCREENSHOT_PREFIX
// INTERFACE1_JSON: {"pid": N, "argv": [...], "cwd": DIR} of the interface behind BASE1, which
// this script restarts. Prints one "ok ..." or "FAIL ..." line per check; exits 1 if any failed.
import { chromium } from "playwright-core";
import { check, expect, finish, sleep } from "./checks.mjs";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";

const [base1, base2, ifaceJson, shots] = process.argv.slice(2);
const iface = JSON.parse(ifaceJson);
const logLines = (page) => page.evaluate(() =>
  [...document.querySelectorAll("#log p")].map((p) => p.textContent));
const logHas = (page, text) =>
  page.waitForFunction((t) => document.querySelector("#log").textContent.includes(t), text);
const statusIs = (page, text) =>
  page.waitForFunction((t) => document.querySelector("#status").textContent === t, text);
// bob's lines in a page's log, in the order shown.
const bobSaid = async (page) => (await logLines(page)).filter((l) => l.startsWith("bob: "));

async function say(page, text) {
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

const profile = mkdtempSync(pathJoin(tmpdir(), "laurel-chromium-"));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let restarted = null;
try {
  const ctxA = await browser.newContext({ viewport: { width: 900, height: 560 } });
  const ctxB = await browser.newContext({ viewport: { width: 900, height: 560 } });
  const ann = await ctxA.newPage(), bob = await ctxB.newPage();
  for (const [page, base, name] of [[ann, base1, "ann"], [bob, base2, "bob"]]) {
    page.setDefaultTimeout(15000);
    await page.goto(base + "/chat/rec/");
    await page.fill("#username", name);
    await page.click("#join button");
  }
  await expect("ann's page says bob joined", logHas(ann, "bob joined"));
  await say(bob, "before");
  await expect("ann sees bob's first message", logHas(ann, "bob: before"));

  // ann's network goes away: her socket is cut and she cannot connect again.
  await ctxA.setOffline(true);
  await ann.evaluate(() => { if (sock.ws) sock.ws.close(); }); // (going offline may have closed it)
  await expect("ann's page says reconnecting…", statusIs(ann, "reconnecting…"));
  await expect("bob's page says ann left", logHas(bob, "ann left"));
  for (let i = 1; i <= 5; i++) await say(bob, "away " + i);
  await expect("bob sees his last message", logHas(bob, "bob: away 5"));
  await sleep(300);
  check(!(await logLines(ann)).some((l) => l.includes("away")), "nothing reaches ann offline");
  await ctxA.setOffline(false);
  await expect("ann is connected again", statusIs(ann, "connected as ann"));
  await expect("ann's page shows what she missed", logHas(ann, "bob: away 5"));
  await say(bob, "after");
  await expect("and the live messages after it", logHas(ann, "bob: after"));
  const seen1 = await bobSaid(ann);
  check(JSON.stringify(seen1) === JSON.stringify(["bob: before", "bob: away 1", "bob: away 2",
    "bob: away 3", "bob: away 4", "bob: away 5", "bob: after"]),
    "every message once, in order, across the drop: " + JSON.stringify(seen1));
  await ann.screenshot({ path: shots + "-recovered.png" });

  // ann's interface is restarted (SIGTERM: it drains and closes with 1001), bob talks meanwhile.
  process.kill(iface.pid, "SIGTERM");
  await expect("ann's page says reconnecting… while her interface is down",
    statusIs(ann, "reconnecting…"));
  for (let i = 1; i <= 5; i++) await say(bob, "restart " + i);
  await expect("bob sees his messages", logHas(bob, "bob: restart 5"));
  for (let i = 0; i < 100; i++) { // the old process is gone: its port is free
    try { process.kill(iface.pid, 0); } catch (e) { break; }
    await sleep(50);
  }
  const out = openSync(pathJoin(iface.cwd, "interface1-restarted.log"), "a");
  restarted = spawn(iface.argv[0], iface.argv.slice(1), { stdio: ["ignore", out, out], cwd: iface.cwd });
  await expect("ann is connected again after the restart", statusIs(ann, "connected as ann"));
  await expect("ann's page shows what she missed in the restart", logHas(ann, "bob: restart 5"));
  await say(bob, "done");
  await expect("and the live ones", logHas(ann, "bob: done"));
  const seen2 = (await bobSaid(ann)).slice(seen1.length);
  check(JSON.stringify(seen2) === JSON.stringify(["bob: restart 1", "bob: restart 2",
    "bob: restart 3", "bob: restart 4", "bob: restart 5", "bob: done"]),
    "every message once, in order, across the interface restart: " + JSON.stringify(seen2));

  // A reload keeps the position in sessionStorage; what came meanwhile is shown.
  await ann.reload();
  await say(bob, "while reloading");
  await ann.fill("#username", "ann");
  await ann.click("#join button");
  await expect("the reloaded page shows the message sent while it reloaded",
    logHas(ann, "bob: while reloading"));
  await ann.screenshot({ path: shots + "-restarted.png" });
} catch (e) {
  check(false, "the browser test ran: " + e.stack);
} finally {
  await browser.close();
  if (restarted) {
    restarted.kill("SIGTERM");
    await new Promise((r) => restarted.once("exit", r));
  }
  rmSync(profile, { recursive: true, force: true });
}
finish();
