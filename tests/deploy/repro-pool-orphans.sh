#!/bin/sh
# laurel-worker's processes outlive their pool when the pool is killed with -9.
B=${B:-build-deploy}; T=$(mktemp -d); P=6398
redis-server --port $P --save '' --appendonly no --daemonize yes --pidfile $T/r.pid --dir $T >/dev/null
$B/worker/laurel-worker --app $B/tests/integration/worker/liblaurel-testapp.so --layer redis://127.0.0.1:$P --processes 2 2>/dev/null &
POOL=$!; sleep 1
KIDS=$(pgrep -d, -P $POOL)
kill -9 $POOL; sleep 2
echo "pool $POOL killed; its processes still alive (expected none):"; ps -o pid,ppid,args -p "$KIDS" | tail -n +2
kill $(echo $KIDS | tr , " ") 2>/dev/null; kill $(cat $T/r.pid); rm -rf $T
