// The chat page in a real browser: headless Chromium (Debian's) driven by playwright-core.
// Run by test-browser.py, which starts the servers:
//   node browser-chat.mjs BASE_URL LAUREL_TOOL LAYER_URL SCREENSHOT_PREFIX
// Prints one "ok ..." or "FAIL ..." line per check; exits 1 if any failed.
import { chromium } from "playwright-core";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";

const [base, tool, layer, shots] = process.argv.slice(2);
let failures = 0;

function check(cond, what) {
  console.log((cond ? "ok   " : "FAIL ") + what);
  if (!cond) failures++;
}

// A wait that fails the check instead of the script.
async function expect(what, promise) {
  try {
    await promise;
    check(true, what);
  } catch (e) {
    check(false, what + ": " + String(e.message).split("\n")[0]);
  }
}

const users = (page) => page.locator("#users li").allTextContents();
const usersAre = (page, want) =>
  page.waitForFunction((w) => [...document.querySelectorAll("#users li")]
    .map((li) => li.textContent).join(",") === w.join(","), want);
const logHas = (page, text) =>
  page.waitForFunction((t) => document.querySelector("#log").textContent.includes(t), text);

async function join(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
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
process.exit(failures ? 1 : 0);
