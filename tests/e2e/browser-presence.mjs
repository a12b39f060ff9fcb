// The presence page in headless Chromium (playwright-core): two pages of a room show 2, one
// closes, the other shows 1. Run by test-presence.py: node browser-presence.mjs BASE_URL
// Prints one "ok ..." or "FAIL ..." line per check; exits 1 if any failed.
import { chromium } from "playwright-core";
import { check, expect, finish } from "./checks.mjs";

const [base] = process.argv.slice(2);

const countIs = (page, n) =>
  page.waitForFunction((w) => document.querySelector("#count").textContent === w, String(n));

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox"] });
try {
  const context = await browser.newContext();
  const one = await context.newPage();
  one.setDefaultTimeout(10000);
  await one.goto(base + "/presence/web");
  check(one.url() === base + "/presence/web/", "/presence/web leads to /presence/web/");
  await expect("the first page shows 1", countIs(one, 1));
  check(await one.locator("#room").textContent() === "web", "the page names its room");
  const two = await context.newPage();
  two.setDefaultTimeout(10000);
  await two.goto(base + "/presence/web/");
  await expect("the second page shows 2", countIs(two, 2));
  await expect("the first page shows 2", countIs(one, 2));
  await two.close();
  await expect("one page closed: the other shows 1", countIs(one, 1));
  await expect("its log says who left",
    one.waitForFunction(() => document.querySelector("#log").textContent.includes("leave: 1")));
} finally {
  await browser.close();
}
finish();
