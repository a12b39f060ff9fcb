"""What the fault tests share: counting what is left in the stack's Redis, directly (redis-cli,
one EVAL per count), and the file limit for thousands of sockets."""
import asyncio
import resource
import subprocess
import time

# (room members, claim members, roster members) over the groups matching ARGV[1]; with ARGV[2],
# only the members starting with it.
GROUPS_LUA = """
local room, claim, roster, cur = 0, 0, 0, "0"
local p = ARGV[2] or ""
repeat
  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do
    local n = 0
    if p == "" then
      n = redis.call('ZCARD', k)
    else
      for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do
        if string.sub(m, 1, #p) == p then n = n + 1 end
      end
    end
    if string.sub(k, -6) == '.users' then
      roster = roster + n
    elseif string.find(k, '.name.', 1, true) then
      claim = claim + n
    else
      room = room + n
    end
  end
until cur == "0"
return {room, claim, roster}
"""

# Keys matching ARGV[1] (SCAN, not KEYS).
COUNT_KEYS_LUA = """
local n, cur = 0, "0"
repeat
  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)
  cur = r[1]
  n = n + #r[2]
until cur == "0"
return n
"""


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def redis(st, *args):
    r = subprocess.run(["redis-cli", "-p", str(st.redis_port)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def group_counts(st, pattern="asgi::group:chat-*", prefix=None):
    """(room members, claim members, roster members) over every group matching pattern (members
    starting with prefix only, if given)."""
    out = redis(st, "EVAL", GROUPS_LUA, 0, pattern, *([prefix] if prefix else [])).split()
    return tuple(int(x) for x in out) if len(out) == 3 else (-1, -1, -1)


async def wait_until(fn, want, timeout, step=0.2):
    """Calls fn until it returns want or timeout seconds pass; returns its last value."""
    start = time.monotonic()
    while True:
        v = fn()
        if v == want or time.monotonic() - start >= timeout:
            return v
        await asyncio.sleep(step)
