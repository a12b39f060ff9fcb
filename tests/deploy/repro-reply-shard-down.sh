#!/bin/sh
# A request on an interface whose reply queue's shard is down waits for --http-timeout instead of
# getting 503 at once.
B=${B:-build-deploy}; T=$(mktemp -d)
for p in 6395 6396; do redis-server --port $p --save '' --daemonize yes --pidfile $T/r$p.pid --dir $T >/dev/null; done
export LAUREL_LAYER=redis://127.0.0.1:6395,redis://127.0.0.1:6396
$B/worker/laurel-worker --app $B/tests/integration/worker/liblaurel-testapp.so --processes 1 2>/dev/null & W=$!
$B/interface/laurel-interface -p 8099 -t 30 2>$T/i.log & I=$!
sleep 1
PREFIX=$($B/tool/laurel stats | awk '$1 == "interface" {print $2}')
SHARD=$(python3 -c "import zlib,sys; print((zlib.crc32(sys.argv[1].encode()) & 0xfff) * 2 // 4096)" "$PREFIX")
PORT=$((6395 + SHARD)); echo "reply queue $PREFIX is on shard $SHARD (port $PORT); stopping it"
kill $(cat $T/r$PORT.pid); sleep 0.5
for i in 1 2 3 4; do curl -s -o /dev/null -m 8 -w "%{http_code} in %{time_total}s\n" http://127.0.0.1:8099/hello || echo "no answer within 8 s (curl exit $?)"; done
kill $I $W; wait; for f in $T/r*.pid; do kill $(cat $f) 2>/dev/null; done; rm -rf $T
