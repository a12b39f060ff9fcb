#!/usr/bin/python3
"""`laurel stats --prometheus` against a layer of two real redis-server shards.

Known messages go on known channels with `laurel send` (a normal channel, which lands on either
shard, process and single-reader channels, a small-capacity process channel filled past its
capacity), groups and an interface announcement are written with redis-cli, and the printed
figures must be exactly those: queue depths and per-channel counters summed over the shards,
"name!x" counted as "name!" and "name?x" as "name?", global counters, live interfaces, group
members within group_expiry. 230 channels under another prefix check the label cap (200 named,
the rest summed as channel="(other)"). `promtool check metrics` accepts every output. A shard
killed shows as laurel_layer_shard_up 0 (exit 0, named on stderr); both killed: exit 3. Usage
errors exit 2. The alerting rules in docs/operations.md pass `promtool check rules`. Ends with "N passed, N failed"; a few seconds.

Usage: test-stats-prometheus.py LAUREL_TOOL"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from testlib import check, check_eq, done, free_port, parse_exposition, wait_port  # noqa: E402

TOOL = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tool/laurel"


def promtool(text, what):
    if not shutil.which("promtool"):
        return
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    check(r.returncode == 0, "promtool check metrics accepts " + what, r.stdout + r.stderr)


class Shards:
    def __init__(self, n):
        self.dir = tempfile.mkdtemp(prefix="laurel-stats-")
        self.ports = [free_port() for _ in range(n)]
        self.procs = []

    def __enter__(self):
        for port in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL))
        for port in self.ports:
            if not wait_port(port):
                raise RuntimeError("redis-server did not start")
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def layer(self):
        return sum((["--layer", "redis://127.0.0.1:%d" % p] for p in self.ports), [])

    def cli(self, i, *args):
        return subprocess.run(["redis-cli", "-p", str(self.ports[i])] + [str(a) for a in args],
                              capture_output=True, text=True, check=True).stdout


def tool(shards, *args):
    r = subprocess.run([TOOL] + shards.layer() + list(args), capture_output=True, text=True,
                       timeout=20)
    return r.returncode, r.stdout, r.stderr


def send(shards, channel, n, *opts):
    codes = [tool(shards, *opts, "send", channel, '{"n": %d}' % i)[0] for i in range(n)]
    return codes


def alert_rules():
    """The alerting rules of docs/operations.md pass promtool check rules."""
    if not shutil.which("promtool"):
        return
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                       "operations.md")
    text = open(doc).read()
    start = text.index("## Alerting examples")
    block = text[text.index("```yaml\n", start) + 8:]
    block = block[:block.index("```")]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(block)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True,
                           text=True)
    check(r.returncode == 0 and "SUCCESS" in r.stdout,
          "promtool check rules accepts docs/operations.md's alerting rules",
          r.stdout + r.stderr)


def main(sh):
    # The load: 7 on a normal channel (round robin: either shard), 3 + 2 on two locals of one
    # process channel, 2 + 1 on two single-reader channels, and 6 sends to a process channel of
    # capacity 4 (4 taken, 2 refused as full).
    send(sh, "chan.a", 7)
    send(sh, "proc.x!abc", 3)
    send(sh, "proc.x!def", 2)
    send(sh, "single?AbCdEfGhIjKl", 2)
    send(sh, "single?MnOpQrStUvWx", 1)
    codes = send(sh, "tiny!z", 6, "--capacity", "4")
    check_eq(codes, [0, 0, 0, 0, 1, 1], "sends to tiny!z (capacity 4): 4 taken, 2 full")
    # A live interface (announced until the future), an expired one, groups of which one
    # member is older than group_expiry (86400 s), and laurel's control_dropped counter.
    now = time.time()
    sh.cli(0, "ZADD", "asgi::interfaces", now + 60, "laurel.response.AbCdEfGhIj!")
    sh.cli(1, "ZADD", "asgi::interfaces", now - 5, "laurel.response.Gone000000!")
    sh.cli(0, "ZADD", "asgi::group:room1", now, "a!1", now, "b!2", now - 90000, "old!3")
    sh.cli(1, "ZADD", "asgi::group:room2", now, "c!1")
    sh.cli(1, "ZADD", "asgi::group:lobby", now, "d!1")
    sh.cli(1, "SET", "asgi-meta:#global#:control_dropped", 7)

    code, out, err = tool(sh, "stats", "--prometheus")
    check_eq((code, err), (0, ""), "stats --prometheus: exit status and stderr")
    promtool(out, "the output of two shards")
    m = parse_exposition(out)
    q = "laurel_layer_channel_queued_messages{channel=\"%s\"}"
    sent = "laurel_layer_channel_messages_total{channel=\"%s\"}"
    full = "laurel_layer_channel_sends_full_total{channel=\"%s\"}"
    for k, want in [
            ("laurel_layer_shards", 2), ("laurel_layer_shards_up", 2),
            ('laurel_layer_shard_up{shard="0",url="redis://127.0.0.1:%d/0"}' % sh.ports[0], 1),
            ('laurel_layer_shard_up{shard="1",url="redis://127.0.0.1:%d/0"}' % sh.ports[1], 1),
            ("laurel_layer_interfaces", 1),
            ("laurel_layer_messages_total", 7 + 5 + 3 + 4),
            ("laurel_layer_sends_full_total", 2),
            ("laurel_layer_control_dropped_total", 7),
            ("laurel_layer_channels", 4),
            (q % "chan.a", 7), (q % "proc.x!", 5), (q % "single?", 3), (q % "tiny!", 4),
            (sent % "chan.a", 7), (sent % "proc.x!", 5), (sent % "single?", 3),
            (sent % "tiny!", 4),
            (full % "chan.a", 0), (full % "tiny!", 2),
            ("laurel_layer_delayed_messages", 0), ("laurel_layer_delayed_overdue_seconds", 0)]:
        check_eq(m.get(k), want, k)
    check(not any(k.startswith("laurel_layer_group") for k in m), "no group figures unasked")
    check(not any("AbCd" in k or "abc" in k for k in m),
          "no label holds a channel's random part")

    code, out, err = tool(sh, "stats", "--prometheus", "--groups", "room*")
    check_eq(code, 0, "stats --prometheus --groups room*: exit status")
    promtool(out, "the output with groups")
    m = parse_exposition(out)
    check_eq(m.get("laurel_layer_groups"), 2, "laurel_layer_groups (room1, room2)")
    check_eq(m.get('laurel_layer_group_members{group="room1"}'), 2,
             "room1: two live members (one older than group_expiry is not counted)")
    check_eq(m.get('laurel_layer_group_members{group="room2"}'), 1, "room2: one member")
    check_eq(m.get('laurel_layer_group_members{group="lobby"}'), None, "lobby does not match")

    # Delayed messages (the delay service's sorted set, on the first shard): one 30 s past its
    # time, two due later. The gauge says how many wait and how late the earliest is.
    now_ms = int(time.time() * 1000)
    sh.cli(0, "ZADD", "asgi::delay", now_ms - 30000, "m1", now_ms + 60000, "m2",
           now_ms + 120000, "m3")
    code, out, err = tool(sh, "stats", "--prometheus")
    promtool(out, "the output with delayed messages")
    m = parse_exposition(out)
    check_eq(m.get("laurel_layer_delayed_messages"), 3, "laurel_layer_delayed_messages")
    overdue = m.get("laurel_layer_delayed_overdue_seconds")
    check(overdue is not None and 30 <= overdue < 40,
          "laurel_layer_delayed_overdue_seconds: the earliest is 30 s late", overdue)
    sh.cli(0, "ZREM", "asgi::delay", "m1")
    m = parse_exposition(tool(sh, "stats", "--prometheus")[1])
    check_eq((m.get("laurel_layer_delayed_messages"),
              m.get("laurel_layer_delayed_overdue_seconds")), (2, 0),
             "none overdue: laurel_layer_delayed_overdue_seconds is 0")
    sh.cli(0, "DEL", "asgi::delay")

    # The cap: 230 channels under another prefix, channel i holding i % 7 + 1 messages.
    for s in (0, 1):
        cmds = "".join("RPUSH cap:many.%03d %s\n" % (i, " ".join(["x"] * (i % 7 + 1)))
                       for i in range(230) if i % 2 == s)
        subprocess.run(["redis-cli", "-p", str(sh.ports[s])], input=cmds, text=True,
                       capture_output=True, check=True)
    code, out, err = tool(sh, "--prefix", "cap:", "stats", "--prometheus")
    promtool(out, "the capped output")
    m = parse_exposition(out)
    depths = {k: v for k, v in m.items() if k.startswith("laurel_layer_channel_queued_messages")}
    check_eq(len(depths), 201, "200 channel labels and (other)")
    check_eq(sum(depths.values()), sum(i % 7 + 1 for i in range(230)),
             "the depths, (other) included, add up to every message queued")
    # The statistics prefix (asgi-meta:) is the same for both prefixes, as in asgi_redis: the
    # four channels of the first prefix that have counters are found too, with nothing queued.
    check_eq(m.get("laurel_layer_channels"), 234, "laurel_layer_channels counts all 234")
    check_eq(depths.get(q % "(other)"), 30.0,
             "(other) holds the 34 least busy channels (30 with one message, 4 empty)")
    check_eq(m.get(sent % "(other)"), 19.0, "(other) sums their messages_count too")

    # Usage errors.
    for args, what in [(["stats", "chan.a", "--prometheus"], "with a CHANNEL"),
                       (["stats", "--groups", "room*"], "--groups without --prometheus"),
                       (["send", "a", "{}", "--prometheus"], "--prometheus on send"),
                       (["stats", "--prometheus", "--groups", "a b"], "a bad group pattern")]:
        code, out, err = tool(sh, *args)
        check(code == 2 and err.startswith("laurel: ") and out == "",
              "exit 2 and one line: " + what, (code, out, err))

    # A shard down: its figures are gone, the other's are printed, and it is named.
    sh.procs[1].kill()
    sh.procs[1].wait()
    code, out, err = tool(sh, "stats", "--prometheus")
    m = parse_exposition(out)
    check_eq(code, 0, "one shard down: exit 0")
    check_eq(m.get("laurel_layer_shards_up"), 1, "one shard down: shards_up")
    check_eq(m.get('laurel_layer_shard_up{shard="1",url="redis://127.0.0.1:%d/0"}'
                   % sh.ports[1]), 0, "one shard down: shard 1 is 0")
    check_eq(m.get("laurel_layer_control_dropped_total"), 0,
             "one shard down: its counters are not summed")
    check(err.startswith("laurel: shard 1 (redis://127.0.0.1:%d/0) did not answer" % sh.ports[1]),
          "one shard down: named on stderr", err)
    promtool(out, "the output with a shard down")
    sh.procs[0].kill()
    sh.procs[0].wait()
    code, out, err = tool(sh, "stats", "--prometheus")
    check_eq(code, 3, "both shards down: exit 3")
    check_eq(parse_exposition(out).get("laurel_layer_shards_up"), 0,
             "both shards down: shards_up 0")


if __name__ == "__main__":
    signal.alarm(60)
    with Shards(2) as shards:
        main(shards)
    alert_rules()
    sys.exit(done())
