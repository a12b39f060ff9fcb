// The chat page in a real browser: headless Chromium (Debian's) driven by playwright-core.
// Run by test-browser.py, which starts the servers:
//   node browser-chat.mjs BASE_URL LAUREL_TOOL LAYER_URL SCREENSHOT_PREFIX [METRICS_URL]
// With METRICS_URL (the interface's /metrics), the messages are checked to have gone compressed
// (permessage-deflate) both ways.
// Prints one "ok ..." or "FAIL ..." line per check; exits 1 if any failed.
import { chromium } from "playwright-core";
import { check, expect, finish } from "./checks.mjs";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";

const [base, tool, layer, shots, metricsUrl] = process.argv.slice(2);

async function compressedCounts() {
  const text = await (await fetch(metricsUrl)).text();
  const get = (dir) => Number((text.match(new RegExp(
    'laurel_interface_websocket_compressed_messages_total\\{direction="' + dir + '"\\} (\\d+)'))
    || [0, -1])[1]);
  return { in: get("in"), out: get("out") };
}

const users = (page) => page.locator("#users li").allTextContents();
const usersAre = (page, want) =>
  page.waitForFunction((w) => [...document.querySelectorAll("#users li")]
    .map((li) => li.textContent).join(",") === w.join(","), want);
const logHas = (page, text) =>
  page.waitForFunction((t) => document.querySelector("#log").textContent.includes(t), text);

// Each page's WebSocket handshakes as Chromium saw them (DevTools protocol).
const handshakes = new Map();

async function join(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const seen = [];
  handshakes.set(page, seen);
  const lower = (h) => Object.fromEntries(Object.entries(h || {})
    .map(([k, v]) => [k.toLowerCase(), v]));
  cdp.on("Network.webSocketWillSendHandshakeRequest",
    (e) => seen.push({ request: lower(e.request.headers) }));
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    if (seen.length) seen[seen.length - 1].response = lower(e.response.headers);
  });
  await page.goto(base + "/chat/e2e/");
  await page.fill("#username", name);
  await page.click("#join button");
  return page;
}

const profile = mkdtempSync(pathJoin(tmpdir(), "laurel-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 900, height: 560 },
});
try {
  const alice = await join(context, "alice");
  await expect("alice's page lists alice", usersAre(alice, ["alice"]));
  const hs = handshakes.get(alice).find((h) => h.response) || {};
  check(/permessage-deflate/.test((hs.request || {})["sec-websocket-extensions"] || ""),
    "Chromium offers permessage-deflate: " + (hs.request || {})["sec-websocket-extensions"]);
  check(/^permessage-deflate; server_no_context_takeover; client_no_context_takeover$/
    .test((hs.response || {})["sec-websocket-extensions"] || ""),
    "laurel agrees: " + (hs.response || {})["sec-websocket-extensions"]);
  const before = metricsUrl ? await compressedCounts() : null;
  check((await alice.title()) === "laurel chat: e2e", "the page's title names the room");

  const bob = await join(context, "bob");
  await expect("bob's page lists alice and bob", usersAre(bob, ["alice", "bob"]));
  await expect("alice's page lists alice and bob", usersAre(alice, ["alice", "bob"]));
  await expect("alice's page says bob joined", logHas(alice, "bob joined"));

  await alice.fill("#message", "hello from alice");
  await alice.press("#message", "Enter");
  await expect("bob's page shows alice's message", logHas(bob, "alice: hello from alice"));
  await expect("alice's page shows her message", logHas(alice, "alice: hello from alice"));
  check((await alice.inputValue("#message")) === "", "the input is emptied after sending");

  // A long message (compressed both ways where deflate was agreed) arrives whole.
  const long = "a longer message so that compression pays: " +
    "the quick brown fox jumps over the lazy dog, ".repeat(12) + "end.";
  await alice.fill("#message", long);
  await alice.press("#message", "Enter");
  await expect("bob's page shows alice's long message whole", logHas(bob, "alice: " + long));
  if (metricsUrl) {
    const after = await compressedCounts();
    check(after.in > before.in, "alice's long message reached laurel compressed (" +
      (after.in - before.in) + " compressed messages in)");
    check(after.out >= before.out + 2, "and went to both pages compressed (" +
      (after.out - before.out) + " out)");
  }

  await bob.fill("#message", "hi alice <b>not bold</b>");
  await bob.click("#send button[type=submit]");
  await expect("alice's page shows bob's message as text",
    logHas(alice, "bob: hi alice <b>not bold</b>"));

  // The background push one-liner reaches both pages.
  const push = JSON.stringify({ type: "message", user: "ops", text: "deploy in 5 minutes" });
  const r = spawnSync(tool, ["--layer", layer, "group-send", "chat-e2e",
                             JSON.stringify({ text: push })], { encoding: "utf8" });
  check(r.status === 0 && r.stdout.trim() === "2", "laurel group-send reached both pages");
  await expect("alice's page shows the push", logHas(alice, "ops: deploy in 5 minutes"));
  await expect("bob's page shows the push", logHas(bob, "ops: deploy in 5 minutes"));

  // A third page that takes bob's name is refused, and says so.
  const bob2 = await join(context, "bob");
  await expect("a second bob is told the name is taken",
    bob2.waitForFunction(() => document.querySelector("#notice").textContent.includes("taken")));
  check(await bob2.isVisible("#join"), "the second bob is back at the join form");
  await bob2.screenshot({ path: shots + "-taken.png" });
  await bob2.close();

  await alice.screenshot({ path: shots + ".png" });
  console.log("screenshot: " + shots + ".png");

  // Closing bob's page updates alice's.
  await bob.close();
  await expect("alice's page lists only alice after bob closed his page",
    usersAre(alice, ["alice"]));
  await expect("alice's page says bob left", logHas(alice, "bob left"));
  check(JSON.stringify(await users(alice)) === '["alice"]', "the list is [alice]");
  await alice.screenshot({ path: shots + "-left.png" });

  await alice.click("#leave");
  await expect("leaving returns to the join form", alice.waitForSelector("#join", { state: "visible" }));
} catch (e) {
  check(false, "the browser test ran to the end: " + e.message);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
finish();
