#!/usr/bin/python3
"""Runs the shipped deployment with its shards behind Redis Sentinel, for real.

Usage: test-deploy-sentinel.py SOURCE_ROOT LAUREL_INTERFACE LAUREL_WORKER LAUREL_TOOL APP.so

The Redis side is rendered from deploy/sentinel/: per shard a master and two replicas
(redis.conf), three sentinels (sentinel.conf + one sentinel-master.conf block per shard). The
laurel side is deploy/supervisord/laurel.conf and deploy/nginx/laurel.conf as test-deploy.py runs
them (whose machinery this test reuses), with REDIS_URLS holding one redis+sentinel:// URL per
shard. Checked, through nginx, with chat clients of the test application on both interfaces:
messages flow; `laurel stats` names each shard's master; the master of the shard holding the
room's group is killed with -9: within the failover time plus one second the clients, still
connected, talk again, the group is whole on the new master and `laurel stats` names it; no laurel
process was restarted by supervisord. Prints "N passed, N failed"; about 30 s."""
import importlib.util
import os
import re
import subprocess
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("deploy", os.path.join(HERE, "test-deploy.py"))
d = importlib.util.module_from_spec(spec)
spec.loader.exec_module(d)  # the module's own main() only runs as a script

SHARDS = 2
REPLICAS = 2
SENTINELS = 3
DOWN_AFTER_MS = 1000


class SentinelDeployment(d.Deployment):
    def __init__(self):
        super().__init__()
        self.redis_ports = [[d.free_port() for _ in range(1 + REPLICAS)] for _ in range(SHARDS)]
        self.sentinel_ports = [d.free_port() for _ in range(SENTINELS)]
        self.redis = {}
        sl = ",".join("127.0.0.1:%d" % p for p in self.sentinel_ports)
        self.urls = ",".join("redis+sentinel://%s/laurel-%d" % (sl, i) for i in range(SHARDS))

    def spawn(self, name, argv):
        logf = open(os.path.join(self.logs, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        d.PROCS.append(p)
        return p

    def start_redis_side(self):
        for i in range(SHARDS):
            for k, port in enumerate(self.redis_ports[i]):
                dd = os.path.join(d.TMP, "redis-%d-%d" % (i, k))
                os.makedirs(dd, exist_ok=True)
                conf = self.render("sentinel/redis.conf", os.path.join(self.etc, "redis-%d-%d.conf"
                                                                       % (i, k)),
                                   PORT=port, BIND="127.0.0.1", DIR=dd,
                                   REPLICAOF="replicaof 127.0.0.1 %d" % self.redis_ports[i][0]
                                   if k else "")
                self.redis[port] = self.spawn("redis-%d-%d" % (i, k), ["redis-server", conf])
        for port in self.sentinel_ports:
            dd = os.path.join(d.TMP, "sentinel-%d" % port)
            os.makedirs(dd, exist_ok=True)
            conf = self.render("sentinel/sentinel.conf", os.path.join(self.etc, "sentinel-%d.conf"
                                                                      % port),
                               PORT=port, BIND="127.0.0.1", DIR=dd)
            for i in range(SHARDS):
                block = self.render("sentinel/sentinel-master.conf", conf + ".part",
                                    NAME="laurel-%d" % i, HOST="127.0.0.1",
                                    PORT=self.redis_ports[i][0], QUORUM=2,
                                    DOWN_AFTER_MS=DOWN_AFTER_MS)
                with open(conf, "a") as f:
                    f.write(open(block).read())
                os.unlink(block)
            self.spawn("sentinel-%d" % port, ["redis-sentinel", conf])

    def cli(self, port, *args):
        r = subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip()

    def topology_ready(self):
        for p in self.sentinel_ports:
            for i in range(SHARDS):
                f = self.cli(p, "SENTINEL", "MASTER", "laurel-%d" % i).split("\n")
                m = dict(zip(f[::2], f[1::2]))
                if m.get("num-slaves") != str(REPLICAS) or \
                        m.get("num-other-sentinels") != str(SENTINELS - 1):
                    return False
        return all("master_link_status:up" in self.cli(port, "INFO", "replication")
                   for i in range(SHARDS) for port in self.redis_ports[i][1:])

    def master_of(self, i):
        out = self.cli(self.sentinel_ports[-1], "SENTINEL", "get-master-addr-by-name",
                       "laurel-%d" % i).split("\n")
        return int(out[1]) if len(out) == 2 else None


async def main(dep):
    dep.start_redis_side()
    # Sentinels learn replicas from the masters' INFO every 10 s: on a loaded machine it takes
    # a few rounds.
    d.check(d.wait_for(dep.topology_ready, 60, 0.2),
            "the sentinels see %d replicas per master and each other" % REPLICAS)
    dep.start_supervisord()
    socks = [os.path.join(dep.run, "interface-%02d.sock" % n) for n in range(d.INTERFACES)]
    ok = d.wait_for(lambda: all(os.path.exists(s) for s in socks)
                    and len(dep.worker_children()) == d.WORKER_PROCESSES, 20)
    if not d.check(ok, "supervisord started the interfaces and the workers"):
        raise RuntimeError(dep.ctl("status"))
    d.check(d.wait_for(lambda: len(dep.live_interfaces() or []) == d.INTERFACES, 10),
            "laurel stats shows the live interfaces")
    rc, out, err = dep.tool("stats")
    for i in range(SHARDS):
        d.check(re.search(r"^shard %d redis\+sentinel://\S+/laurel-%d master 127\.0\.0\.1:%d "
                          % (i, i, dep.redis_ports[i][0]), out, re.M) is not None,
                "laurel stats names shard %d's master: %r" % (i, out))
    dep.start_nginx()
    d.wait_for(lambda: d.socket.socket().connect_ex(("127.0.0.1", dep.http_port)) == 0, 10)
    st, body, _ = d.get(dep, d.Chat.HTTP_PATH)
    d.check(d.Chat.http_ok(st, body), "GET through nginx on Sentinel shards: %r" % st)

    # The room's group's shard (SPEC §3 placement over SHARDS shards).
    shard = ((zlib.crc32(b"chat-deployroom") & 0xfff) * SHARDS) // 4096
    clients = [await d.connect(dep, "deployroom", "s%d" % i) for i in range(6)]
    for c in clients:
        await d.say(c, "before from " + c.nick)
    for c in clients:
        d.check(await d.all_hear(clients, c, "before from " + c.nick), "everyone hears " + c.nick)
    pids = dep.status()

    # kill -9 of the master of the shard that holds the room's group.
    old = dep.master_of(shard)
    t0 = time.monotonic()
    dep.redis[old].kill()
    d.check(d.wait_for(lambda: dep.master_of(shard) not in (None, old), 15),
            "the sentinels promoted a replica of shard %d" % shard)
    t_switch = time.monotonic()
    new = dep.master_of(shard)
    print("info: failover of shard %d: %.2f s from kill -9 to the new master %d"
          % (shard, t_switch - t0, new), flush=True)
    # The clients stay connected and talk again.
    t1 = None
    end = time.monotonic() + 10
    k = 0
    while time.monotonic() < end:
        k += 1
        await d.say(clients[0], "after %d" % k)
        if await d.all_hear(clients, clients[0], "after %d" % k, timeout=0.25):
            t1 = time.monotonic()
            break
    d.check(t1 is not None and t1 - t_switch <= 1.5,
            "the room talks again within 1.5 s of the switch (%s)"
            % ("%.2f s" % (t1 - t_switch) if t1 else "never"))
    print("info: the room talks again %.2f s after the switch" % ((t1 or end) - t_switch),
          flush=True)
    d.check(all(c.closed is None for c in clients), "no client was disconnected: %r"
            % [c.closed for c in clients])
    members = dep.cli(new, "ZCARD", "asgi::group:chat-deployroom")
    d.check_eq(members, str(len(clients)), "the group is whole on the new master")
    # The sentinels agree within a moment of the switch; laurel stats follows.
    pattern = r"^shard %d \S+ master 127\.0\.0\.1:%d since \S+ epoch [1-9]" % (shard, new)
    out = ""

    def stats_name_it():
        nonlocal out
        out = dep.tool("stats")[1]
        return re.search(pattern, out, re.M) is not None
    d.check(d.wait_for(stats_name_it, 10, step=0.25),
            "laurel stats names the new master and a failover epoch: %r" % out)
    st, body, _ = d.get(dep, d.Chat.HTTP_PATH)
    d.check(d.Chat.http_ok(st, body), "GET through nginx after the failover: %r" % st)
    after = dep.status()
    d.check(all(after.get(n, (None, None))[1] == v[1] for n, v in pids.items()),
            "supervisord restarted nothing: %r -> %r" % (pids, after))
    logs = "".join(d.read(dep.iface_log(n)) for n in range(d.INTERFACES))
    d.check(("master laurel-%d is now 127.0.0.1:%d" % (shard, new)) in logs,
            "the interfaces logged the new master")
    for c in clients:
        await c.ws.close()


if __name__ == "__main__":
    d.run_test(SentinelDeployment, main, "laurel-deploy-sentinel-",
               ("supervisord", "supervisorctl", "nginx", "redis-server", "redis-sentinel"))
