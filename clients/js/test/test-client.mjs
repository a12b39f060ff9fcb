// The client against a real laurel: a redis-server, a laurel-worker pool running the test
// application (its /recover/ROOM/ consumer calls laurel_group_recover on "hist-ROOM"; /demux/ is
// a demultiplexer) and a laurel-interface, all started here on free loopback ports.
//   node --experimental-websocket test/test-client.mjs BUILD_DIR
// Prints "ok ..." / "FAIL ..." per check and "N passed, N failed"; exits 1 if any failed.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LaurelSocket } from "../laurel.js";

const build = process.argv[2] || "build";
const RULE = "hist-*=100/600";
let passed = 0, failed = 0;
const check = (cond, what, detail) => {
  console.log((cond ? "ok   " : "FAIL ") + what + (cond || detail === undefined ? "" :
    ": " + JSON.stringify(detail)));
  cond ? passed++ : failed++;
};
const eq = (got, want, what) =>
  check(JSON.stringify(got) === JSON.stringify(want), what, { got, want });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((res) => {
  const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); });
});
async function waitPort(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((res) => {
      const s = createServer();
      s.once("error", () => res(true)); // in use: listening
      s.listen(port, "127.0.0.1", () => s.close(() => res(false)));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error("port " + port + " never opened");
}
// Waits for an event (or a condition on the client's records) with a deadline.
const until = async (what, cond, ms = 10000) => {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) { check(false, what + " (timed out)"); return false; }
    await sleep(20);
  }
  return true;
};

const dir = mkdtempSync(join(tmpdir(), "laurel-js-"));
const procs = [];
const start = (argv) => {
  const p = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "inherit"] });
  procs.push(p);
  return p;
};
const redisPort = await freePort(), port = await freePort();
const layer = "redis://127.0.0.1:" + redisPort;
const tool = (...args) => spawnSync(join(build, "tool", "laurel"),
  ["--layer", layer, "--group-history", RULE, ...args], { encoding: "utf8" });
const cli = (...args) => spawnSync("redis-cli", ["-p", String(redisPort), ...args], { encoding: "utf8" });
const groupSend = (room, text) => tool("group-send", "hist-" + room, JSON.stringify({ text }));

// A client: what it got, and a switch that makes its connections fail ("offline").
function client(path, opts = {}) {
  let blocked = false;
  class Switch extends WebSocket {
    constructor(u, p) { if (blocked) throw new Error("offline"); super(u, p); }
  }
  const c = new LaurelSocket("ws://127.0.0.1:" + port + path,
    { WebSocket: Switch, minDelay: 100, maxDelay: 400, ...opts });
  const r = { c, messages: [], recoveries: [], connects: 0, disconnects: 0, delays: [],
    block(b) { blocked = b; } };
  c.addEventListener("message", (e) => r.messages.push(e.detail));
  c.addEventListener("recovery", (e) => r.recoveries.push(e.detail));
  c.addEventListener("connect", () => r.connects++);
  c.addEventListener("disconnect", () => r.disconnects++);
  c.addEventListener("reconnecting", (e) => r.delays.push(e.detail));
  return r;
}

try {
  start(["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no", "--dir", dir]);
  await waitPort(redisPort);
  start([join(build, "worker", "laurel-worker"), "--app",
    join(build, "tests", "integration", "worker", "liblaurel-testapp.so"), "--layer", layer,
    "--processes", "2", "--group-history", RULE]);
  start([join(build, "interface", "laurel-interface"), "-b", "127.0.0.1", "-p", String(port),
    "--layer", layer]);
  await waitPort(port);

  // Joins, gets live messages with offsets.
  const a = client("/recover/j1/");
  await until("a connects", () => a.connects === 1);
  await sleep(300);
  for (let i = 1; i <= 5; i++) groupSend("j1", "m" + i);
  await until("a gets 5 messages", () => a.messages.length === 5);
  const epoch = a.messages[0] && a.messages[0].epoch;
  eq(a.messages.map((m) => [m.offset, m.data]), [1, 2, 3, 4, 5].map((i) => [i, "m" + i]),
    "live messages carry their offsets, in order");
  eq(a.c.positions, { "hist-j1": { epoch, offset: 5 } }, "the client tracks its position");

  // The connection drops and cannot come back for a while; 50 messages are sent meanwhile.
  a.block(true);
  a.c.ws.close();
  await until("a sees the drop", () => a.disconnects === 1);
  for (let i = 6; i <= 55; i++) groupSend("j1", "m" + i);
  await sleep(1500); // (the sends above block this event loop: let the retries run)
  check(a.delays.length >= 2, "it keeps trying, with backoff", a.delays);
  check(a.delays.every((d, i) => d.delay >= 0 && d.delay <= Math.min(400, 100 * 2 ** i)),
    "full jitter under a doubling cap (100 ms .. 400 ms)", a.delays.map((d) => d.delay));
  a.block(false);
  await until("a recovers", () => a.recoveries.length === 1);
  eq(a.recoveries[0], { group: "hist-j1", epoch, offset: 55, recovered: true },
    "recovery event: recovered true up to 55");
  eq(a.messages.slice(5).map((m) => m.offset), Array.from({ length: 50 }, (_, i) => 6 + i),
    "exactly the 50 missed, in order");
  groupSend("j1", "m56");
  await until("then live", () => a.messages.length === 56);
  eq(a.messages[55] && a.messages[55].data, "m56", "then the live ones");

  // A page reload: a new client with the same storage starts from the kept position.
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const b = client("/recover/j1/", { storage });
  await until("b gets m57..", () => { return b.connects === 1; });
  await sleep(300);
  groupSend("j1", "m57");
  await until("b gets m57", () => b.messages.length === 1);
  b.c.close();
  await sleep(200);
  groupSend("j1", "m58");
  groupSend("j1", "m59");
  const b2 = client("/recover/j1/", { storage });
  await until("b2 (the reloaded page) recovers", () => b2.recoveries.length === 1);
  eq([b2.recoveries[0].recovered, b2.messages.map((m) => m.data)], [true, ["m58", "m59"]],
    "a reloaded page gets what it missed from the kept position");
  b2.c.close();

  // Another epoch: the history is lost while away; the client is told to reload.
  a.block(true);
  a.c.ws.close();
  await until("a sees the second drop", () => a.disconnects === 2);
  cli("DEL", "asgi::history:hist-j1", "asgi::history-log:hist-j1");
  groupSend("j1", "fresh");
  const had = a.messages.length;
  a.block(false);
  await until("a hears of the lost history", () => a.recoveries.length === 2);
  const r2 = a.recoveries[1] || {};
  check(r2.recovered === false && r2.epoch !== epoch && r2.offset === 1,
    "recovery event: recovered false, the new epoch at offset 1", r2);
  eq(a.messages.length, had, "nothing delivered from the lost history");
  groupSend("j1", "after");
  await until("then live in the new epoch", () => a.messages.length === had + 1);
  eq(a.messages[had] && [a.messages[had].offset, a.messages[had].data], [2, "after"],
    "live messages in the new epoch");
  a.c.close();

  // close() from a disconnect listener (as the chat page does for a refused name) is final.
  const f = client("/echo/");
  await until("f connects", () => f.connects === 1);
  f.c.addEventListener("disconnect", () => f.c.close());
  f.c.ws.close();
  await sleep(1000);
  eq([f.connects, f.delays.length, f.c.state], [1, 0, "closed"],
    "closed from a disconnect listener: no reconnect");

  // A demultiplexer stream, and frames that are not envelopes.
  const d = client("/demux/");
  await until("d connects", () => d.connects === 1);
  const got = [];
  d.c.stream("echo").on((payload) => got.push(payload));
  d.c.stream("echo").send({ hello: "stream" });
  await until("the echo stream answers", () => got.length === 1);
  eq(got[0], { hello: "stream" }, "a stream's payload");
  d.c.close();
  const e = client("/echo/");
  await until("e connects", () => e.connects === 1);
  e.c.send('{"group": "not an envelope"}');
  e.c.send("plain");
  await until("plain frames arrive", () => e.messages.length === 2);
  eq(e.messages.map((m) => m.data).sort(), ['{"group": "not an envelope"}', "plain"].sort(),
    "frames that are not envelopes arrive as they are (two worker processes: any order)");
  e.c.close();
  await sleep(300);
  eq(cli("--scan", "--pattern", "asgi:laurel.response*").stdout.trim(), "",
    "no interface queue holds anything");
} catch (err) {
  check(false, "the test ran: " + (err && err.stack));
} finally {
  for (const p of procs.reverse()) p.kill("SIGTERM");
  await sleep(300);
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
console.log(passed + " passed, " + failed + " failed");
process.exit(failed ? 1 : 0);
