#!/bin/sh
# laurel-interface drain loses websocket.disconnect messages: stale group members after SIGTERM.
B=${B:-build-deploy}; T=$(mktemp -d); P=6399
redis-server --port $P --save '' --appendonly no --daemonize yes --pidfile $T/r.pid --dir $T >/dev/null
L=redis://127.0.0.1:$P
$B/worker/laurel-worker --app $B/tests/integration/worker/liblaurel-testapp.so --layer $L --processes 2 2>$T/w.log &
W=$!
$B/interface/laurel-interface -u $T/i.sock --layer $L 2>$T/i.log &
I=$!
sleep 1
/usr/bin/python3 - "$T/i.sock" <<'PY' &
import asyncio, sys, websockets
async def main():
    ws = [await websockets.unix_connect(sys.argv[1], "ws://x/chat/r/?nick=u%d" % i) for i in range(4)]
    await asyncio.gather(*(w.wait_closed() for w in ws))
    print("close codes:", [w.close_code for w in ws])
asyncio.run(main())
PY
C=$!
sleep 1
echo "members before SIGTERM: $($B/tool/laurel --layer $L group-members chat-r | head -1)"
kill -TERM $I; wait $I; wait $C; sleep 1
echo "members after the interface drained (expected 0): $($B/tool/laurel --layer $L group-members chat-r | head -1)"
kill -TERM $W; wait $W; kill $(cat $T/r.pid); rm -rf $T
