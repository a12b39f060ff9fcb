// laurel dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core.
// Run by test-dashboard.py, which starts the servers:
//   node dashboard.mjs DASHBOARD_URL APP_URL APP_WS_URL LAUREL_TOOL LAYER REDIS2_PID WORKER_UP SHOT
// Prints one "ok ..." or "FAIL ..." line per check (and "info: ..." figures); exits 1 if any
// failed.
import { chromium } from "playwright-core";
import { check, expect, finish, sleep } from "./checks.mjs";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";

const [dash, base, wsBase, tool, layer, redis2Pid, workerUp, shot] = process.argv.slice(2);
const N_HTTP = 540, SOCKETS = 3, WS_MESSAGES = 100, BACKLOG = 30, TINY = 3, TINY_SENT = 5;
const laurel = (...args) => spawnSync(tool, ["--layer", layer, ...args], { encoding: "utf8" });

// The value a readout shows (its data-value), or null.
const readout = (page, chart, series) => page.$eval(
  `#chart-${chart} b.readout[data-series="${series}"]`, (e) => e.dataset.value === "" ? null : Number(e.dataset.value))
  .catch(() => null);
const last = (page, chart, series) => page.$eval(
  `svg[data-chart="${chart}"] path[data-series="${series}"]`, (e) => e.dataset.last === "" ? null : Number(e.dataset.last))
  .catch(() => null);
const readoutAtLeast = (page, chart, series, min) => page.waitForFunction(
  ([c, s, m]) => { const e = document.querySelector(`#chart-${c} b.readout[data-series="${s}"]`);
                   return e && e.dataset.value !== "" && Number(e.dataset.value) >= m; },
  [chart, series, min]);
const readoutIs = (page, chart, series, want) => page.waitForFunction(
  ([c, s, w]) => { const e = document.querySelector(`#chart-${c} b.readout[data-series="${s}"]`);
                   return e && e.dataset.value !== "" && Number(e.dataset.value) === w; },
  [chart, series, want]);

// HTTP load from here: n GETs of /hello, a few at a time, spread over a few seconds.
async function httpLoad(n) {
  let ok = 0;
  const one = async (k) => {
    for (let i = k; i < n; i += 3) {
      const r = await fetch(base + "/hello");
      await r.text();
      if (r.status === 200) ok++;
      await sleep(60);
    }
  };
  await Promise.all([one(0), one(1), one(2)]);
  return ok;
}

// WebSocket load from a page of the application's origin: sockets that each send m messages,
// one after another's echo, then close. Returns the echoes received.
function wsLoad(page, sockets, m) {
  return page.evaluate(async ([url, sockets, m]) => {
    const one = () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      let got = 0;
      ws.onerror = () => reject(new Error("websocket error"));
      ws.onopen = () => ws.send("m0");
      ws.onmessage = () => {
        got++;
        if (got === m) {
          ws.close(1000);
          resolve(got);
        } else {
          setTimeout(() => ws.send("m" + got), 100);
        }
      };
    });
    const all = await Promise.all(Array.from({ length: sockets }, one));
    return all.reduce((a, b) => a + b, 0);
  }, [wsBase + "/echo/", sockets, m]);
}

const profile = mkdtempSync(pathJoin(tmpdir(), "laurel-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1360, height: 980 },
});
try {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(dash)) external.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(dash + "/");
  check((await page.title()) === "laurel dashboard", "the page loads");
  await expect("both shards show up (green)", page.waitForFunction(
    () => document.querySelectorAll("#shards .pill.up").length === 2));
  await expect("the interface's endpoint shows up", page.waitForFunction(() => {
    const e = document.querySelector('#endpoints [data-endpoint="0"]');
    return e && e.classList.contains("up") && e.textContent.startsWith("interface");
  }));
  if (workerUp === "1") {
    await expect("the worker pool's endpoint shows up", page.waitForFunction(() => {
      const e = document.querySelector('#endpoints [data-endpoint="1"]');
      return e && e.classList.contains("up") && e.textContent.startsWith("worker");
    }));
    await expect("worker processes: 1", page.waitForFunction(
      () => document.getElementById("n-processes").dataset.value === "1"));
  } else {
    await expect("an endpoint that does not answer shows down (red)", page.waitForFunction(() => {
      const e = document.querySelector('#endpoints [data-endpoint="1"]');
      return e && e.classList.contains("down") && e.dataset.up === "false";
    }));
  }
  await expect("live interfaces: 1", page.waitForFunction(
    () => document.getElementById("n-interfaces").dataset.value === "1"));
  check((await page.locator("svg[data-chart]").count()) === 6, "six charts");
  const points0 = await page.$eval('svg[data-chart="messages"]', (e) => Number(e.dataset.points));
  await sleep(2200);
  const points1 = await page.$eval('svg[data-chart="messages"]', (e) => Number(e.dataset.points));
  check(points1 >= points0 + 2, "the charts gain a point a second without a reload",
        [points0, points1]);

  // A backlog nobody reads, and a channel of capacity 3 sent 5 messages (2 refused as full).
  for (let i = 0; i < BACKLOG; i++) laurel("send", "dash.backlog", JSON.stringify({ n: i }));
  const tiny = [];
  for (let i = 0; i < TINY_SENT; i++)
    tiny.push(laurel("--capacity", String(TINY), "send", "dash.tiny!x", "{}").status);
  check(JSON.stringify(tiny) === "[0,0,0,1,1]", "laurel send filled dash.tiny! (2 refused)", tiny);

  // The load, and what the page shows while it runs.
  const t0 = Date.now();
  const wsPage = await context.newPage();
  await wsPage.goto(base + "/hello");
  const wsDone = wsLoad(wsPage, SOCKETS, WS_MESSAGES);
  const httpDone = httpLoad(N_HTTP);
  await expect("open WebSocket connections reach " + SOCKETS,
    readoutAtLeast(page, "connections", "conn_ws", SOCKETS));
  await expect("WebSocket messages/s rise", readoutAtLeast(page, "messages", "ws_in", 1));
  await expect("HTTP responses/s rise", readoutAtLeast(page, "messages", "http", 5));
  await expect("worker messages/s or layer sends/s rise",
    readoutAtLeast(page, "messages", "layer_msgs", 5));
  await expect("request latency p50 is drawn", readoutAtLeast(page, "latency", "p50", 0.0001));
  await expect("queue depth of dash.backlog is " + BACKLOG,
    readoutIs(page, "queues", "queue:dash.backlog", BACKLOG));
  await expect("queue depth of dash.tiny! is " + TINY,
    readoutIs(page, "queues", "queue:dash.tiny!", TINY));
  const p99 = await last(page, "latency", "p99");
  check(p99 > 0 && p99 < 1000, "the p99 line ends at a plausible latency (ms)", p99);
  await sleep(Math.max(0, 8500 - (Date.now() - t0)));
  await page.screenshot({ path: shot, fullPage: true });
  console.log("info: screenshot " + shot);
  const [httpOk, echoes] = await Promise.all([httpDone, wsDone]);
  console.log(`info: load took ${Date.now() - t0} ms: ${httpOk} HTTP 200, ${echoes} echoes`);
  check(httpOk === N_HTTP, "every HTTP request answered 200", httpOk);
  check(echoes === SOCKETS * WS_MESSAGES, "every WebSocket message echoed", echoes);

  // Once the last rates are in, what the page holds adds up to what was sent.
  await sleep(3500);
  await expect("open WebSocket connections back to 0", readoutIs(page, "connections", "conn_ws", 0));
  const sums = await page.evaluate(() => {
    const total = (k) => {
      let s = 0;
      const v = state.series[k];
      for (let i = 1; i < v.length; i++)
        if (v[i] !== null) s += v[i] * (state.t[i] - state.t[i - 1]) / 1000;
      return s;
    };
    return { http: total("http"), ws_in: total("ws_in"), ws_out: total("ws_out"),
             full: total("full"), layer: total("layer_msgs") };
  });
  console.log("info: the page's rates, summed over time: " + JSON.stringify(sums));
  const near = (got, want) => Math.abs(got - want) <= Math.max(3, want * 0.05);
  check(near(sums.http, N_HTTP), `HTTP responses/s add up to ${N_HTTP} (within 5%)`, sums.http);
  check(near(sums.ws_in, SOCKETS * WS_MESSAGES),
        `WebSocket in/s add up to ${SOCKETS * WS_MESSAGES} (within 5%)`, sums.ws_in);
  check(near(sums.ws_out, SOCKETS * WS_MESSAGES),
        `WebSocket out/s add up to ${SOCKETS * WS_MESSAGES} (within 5%)`, sums.ws_out);
  check(Math.round(sums.full) === TINY_SENT - TINY, "channel-full events/s add up to 2", sums.full);
  const api = await (await fetch(dash + "/api/state?since=" + Date.now())).json();
  const ch = Object.fromEntries(api.layer.channels.map((c) => [c.name, c]));
  check(ch["dash.backlog"] && ch["dash.backlog"].queued === BACKLOG &&
        ch["dash.backlog"].messages === BACKLOG, "/api/state: dash.backlog queued and sent 30",
        ch["dash.backlog"]);
  check(ch["dash.tiny!"] && ch["dash.tiny!"].full === TINY_SENT - TINY,
        "/api/state: dash.tiny! refused 2 as full", ch["dash.tiny!"]);
  check(api.series.t.length === 0, "/api/state?since=now has no samples", api.series.t.length);

  // A shard killed shows red within a few seconds; the other stays green.
  const killed = Date.now();
  process.kill(Number(redis2Pid), "SIGKILL");
  await expect("shard 1 shows down (red) within 5 s", page.waitForFunction(() => {
    const e = document.querySelector('#shards [data-shard="1"]');
    return e && e.classList.contains("down") && e.dataset.up === "false";
  }, null, { timeout: 5000 }));
  console.log(`info: shard 1 red ${Date.now() - killed} ms after the kill`);
  // The page redraws the shard pills on every poll: query and read in one evaluation, or the
  // element read may be one already replaced (detached: no computed colour).
  const color = await page.evaluate(() => {
    const e = document.querySelector('#shards [data-shard="1"]');
    return e ? getComputedStyle(e).color : null;
  });
  check(color === "rgb(207, 34, 46)", "the down shard is drawn red", color);
  check(await page.evaluate(() => {
    const e = document.querySelector('#shards [data-shard="0"]');
    return !!e && e.classList.contains("up");
  }), "shard 0 stays up (green)");
  await expect("shards up drops to 1", readoutIs(page, "processes", "shards_up", 1));
  check(external.length === 0, "the page loads nothing from elsewhere", external);
  check(errors.length === 0, "no script error on the page", errors);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
finish();
