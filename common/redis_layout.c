/* The Redis layout shared by both Redis clients (see redis_layout.h). */
#include "common/redis_layout.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Placement ------------------------------------------------------------------------------- */

size_t layer_shard_of(size_t nshards, const char *name, size_t len)
{
	if (nshards <= 1)
		return 0;
	uint32_t crc = util_crc32(name, len);
	return (size_t)(((uint64_t)(crc & 0xfff) * nshards) / 4096);
}

size_t layer_channel_home(size_t nshards, const char *channel)
{
	const char *bang = strchr(channel, '!');
	if (bang)
		return layer_shard_of(nshards, channel, (size_t)(bang - channel) + 1);
	if (strchr(channel, '?'))
		return layer_shard_of(nshards, channel, strlen(channel));
	return SIZE_MAX;
}

/* --- URLs ------------------------------------------------------------------------------------ */

static int parse_int(const char *s, size_t n, int min, int max, int *out)
{
	if (n == 0 || n > 9)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* host[:port] in p[0..n): a name, an IPv4 address, or an IPv6 address in brackets. */
static int parse_hostport(const char *p, size_t n, int defport, char **host, int *port)
{
	const char *end = p + n, *hend;
	if (n && *p == '[') {
		hend = memchr(p, ']', n);
		if (!hend || hend == p + 1)
			return -1;
		*host = xstrndup(p + 1, (size_t)(hend - p - 1));
		hend++;
	} else {
		hend = p;
		while (hend < end && *hend != ':')
			hend++;
		if (hend == p)
			return -1;
		*host = xstrndup(p, (size_t)(hend - p));
		if (strpbrk(*host, "/?#@[], ")) {
			free(*host);
			*host = NULL;
			return -1;
		}
	}
	*port = defport;
	if (hend < end) {
		if (*hend != ':' ||
		    parse_int(hend + 1, (size_t)(end - hend - 1), 1, 65535, port) < 0) {
			free(*host);
			*host = NULL;
			return -1;
		}
	}
	return 0;
}

static void describe_hostport(char *out, size_t size, const char *host, int port)
{
	snprintf(out, size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* [[user]:password@] at p, when the userinfo ends at at (the last '@' before the hosts, or
 * NULL: none); moves p past it. */
static int parse_userinfo(const char **p, const char *at, struct layer_endpoint *s)
{
	if (!at)
		return 0;
	const char *colon = memchr(*p, ':', (size_t)(at - *p));
	if (!colon)
		return -1;
	if (colon > *p)
		s->user = xstrndup(*p, (size_t)(colon - *p));
	s->password = xstrndup(colon + 1, (size_t)(at - colon - 1));
	*p = at + 1;
	return 0;
}

static bool master_name_ok(const char *p, size_t n)
{
	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9') || strchr("._-", p[i])))
			return false;
	return true;
}

static int parse_sentinel(struct layer_endpoint *s, const char *url, char *why, size_t whylen)
{
	const char *p = url + strlen("redis+sentinel://");
	const char *slash = strchr(p, '/');
	if (!slash) {
		snprintf(why, whylen, "no /MASTER_NAME");
		return -1;
	}
	/* The userinfo is before the host list: its '@' is the last one before the '/'. */
	if (parse_userinfo(&p, memrchr(p, '@', (size_t)(slash - p)), s) < 0) {
		snprintf(why, whylen, "expected [user]:password@ before the sentinels");
		return -1;
	}
	char desc[1024];
	size_t dn = (size_t)snprintf(desc, sizeof(desc), "redis+sentinel://");
	s->sentinels = xcalloc(LAYER_SENTINELS_MAX, sizeof(*s->sentinels));
	while (p < slash) {
		const char *comma = memchr(p, ',', (size_t)(slash - p));
		const char *end = comma ? comma : slash;
		if (s->nsentinels == LAYER_SENTINELS_MAX) {
			snprintf(why, whylen, "more than %d sentinels", LAYER_SENTINELS_MAX);
			return -1;
		}
		struct layer_hostport *h = &s->sentinels[s->nsentinels];
		if (parse_hostport(p, (size_t)(end - p), LAYER_SENTINEL_PORT, &h->host, &h->port) <
		    0) {
			snprintf(why, whylen, "bad sentinel address \"%.*s\"", (int)(end - p), p);
			return -1;
		}
		s->nsentinels++;
		char hp[300];
		describe_hostport(hp, sizeof(hp), h->host, h->port);
		if (dn < sizeof(desc))
			dn += (size_t)snprintf(desc + dn, sizeof(desc) - dn, "%s%s",
					       s->nsentinels > 1 ? "," : "", hp);
		p = comma ? comma + 1 : slash;
		if (comma && p == slash) {
			snprintf(why, whylen, "an empty sentinel address");
			return -1;
		}
	}
	if (s->nsentinels == 0) {
		snprintf(why, whylen, "no sentinel address");
		return -1;
	}
	p = slash + 1;
	const char *q = strchr(p, '?');
	size_t n = q ? (size_t)(q - p) : strlen(p);
	if (!master_name_ok(p, n)) {
		snprintf(why, whylen, "bad master name \"%.*s\" (letters, digits, '.', '_', '-')",
			 (int)n, p);
		return -1;
	}
	s->master_name = xstrndup(p, n);
	while (q && *q) {
		q++; /* '?' or '&' */
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		if (!eq) {
			snprintf(why, whylen, "bad query parameter \"%.*s\"", (int)len, q);
			return -1;
		}
		size_t kl = (size_t)(eq - q), vl = len - kl - 1;
		const char *v = eq + 1;
		if (kl == 2 && strncmp(q, "db", 2) == 0) {
			if (parse_int(v, vl, 0, 1 << 20, &s->db) < 0) {
				snprintf(why, whylen, "bad db \"%.*s\"", (int)vl, v);
				return -1;
			}
		} else if (kl == 17 && strncmp(q, "sentinel_password", 17) == 0 && !s->sentinel_password) {
			s->sentinel_password = xstrndup(v, vl);
		} else if (kl == 13 && strncmp(q, "sentinel_user", 13) == 0 && !s->sentinel_user) {
			s->sentinel_user = xstrndup(v, vl);
		} else {
			snprintf(why, whylen,
				 "unknown or repeated parameter \"%.*s\" (db, sentinel_user, "
				 "sentinel_password)",
				 (int)kl, q);
			return -1;
		}
		q = amp;
	}
	if (s->sentinel_user && !s->sentinel_password) {
		snprintf(why, whylen, "sentinel_user without sentinel_password");
		return -1;
	}
	if (dn < sizeof(desc))
		snprintf(desc + dn, sizeof(desc) - dn, s->db ? "/%s?db=%d" : "/%s", s->master_name,
			 s->db);
	s->desc = xstrdup(desc);
	return 0;
}

int layer_endpoint_parse(struct layer_endpoint *s, const char *url, char *err, size_t errlen)
{
	const char *p;
	char why[200] = "";
	if (strncmp(url, "redis+sentinel://", 17) == 0) {
		if (parse_sentinel(s, url, why, sizeof(why)) == 0)
			return 0;
		layer_endpoint_fini(s);
		goto bad;
	}
	if (strncmp(url, "unix://", 7) == 0) {
		p = url + 7;
		const char *q = strchr(p, '?');
		size_t n = q ? (size_t)(q - p) : strlen(p);
		if (n == 0 || p[0] != '/')
			goto bad;
		s->path = xstrndup(p, n);
		if (q) {
			if (strncmp(q, "?db=", 4) != 0 ||
			    parse_int(q + 4, strlen(q + 4), 0, 1 << 20, &s->db) < 0)
				goto bad;
		}
		s->desc = xstrdup(url);
		return 0;
	}
	if (strncmp(url, "redis://", 8) != 0)
		goto bad;
	p = url + 8;
	if (parse_userinfo(&p, strrchr(p, '@'), s) < 0)
		goto bad;
	size_t hn = strcspn(p, "/");
	if (parse_hostport(p, hn, 6379, &s->host, &s->port) < 0)
		goto bad;
	p += hn;
	if (*p == '/' && p[1]) {
		if (parse_int(p + 1, strlen(p + 1), 0, 1 << 20, &s->db) < 0)
			goto bad;
	} else if (*p && strcmp(p, "/") != 0) {
		goto bad;
	}
	char hp[300], desc[512];
	describe_hostport(hp, sizeof(hp), s->host, s->port);
	snprintf(desc, sizeof(desc), "redis://%s/%d", hp, s->db);
	s->desc = xstrdup(desc);
	return 0;
bad:
	layer_endpoint_fini(s);
	char *shown = xstrdup(url);
	util_scrub_secrets(shown);
	if (errlen)
		snprintf(err, errlen,
			 "bad layer URL \"%s\"%s%s: expected redis://[[user]:password@]host[:port][/db], "
			 "unix:///path.sock[?db=N] or redis+sentinel://[[user]:password@]host[:port]"
			 "[,host[:port]...]/MASTER_NAME[?db=N&sentinel_password=P]",
			 shown, why[0] ? ": " : "", why);
	free(shown);
	return -EINVAL;
}

void layer_endpoint_fini(struct layer_endpoint *e)
{
	free(e->desc);
	free(e->host);
	free(e->path);
	free(e->user);
	free(e->password);
	free(e->master_name);
	for (size_t i = 0; i < e->nsentinels; i++)
		free(e->sentinels[i].host);
	free(e->sentinels);
	free(e->sentinel_user);
	free(e->sentinel_password);
	memset(e, 0, sizeof(*e));
}

/* --- Replies ---------------------------------------------------------------------------------- */

const char *layer_role(const struct redisReply *r)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
	    r->element[0]->type == REDIS_REPLY_STRING)
		return r->element[0]->str;
	return r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected answer";
}

/* --- Key names ------------------------------------------------------------------------------- */

void layer_key_interfaces(const struct layer_config *cfg, char *out, size_t size)
{
	snprintf(out, size, "%s:interfaces", cfg->prefix);
}

void layer_key_global(const struct layer_config *cfg, const char *counter, char *out, size_t size)
{
	snprintf(out, size, "%s#global#:%s", cfg->stats_prefix, counter);
}

/* --- Scripts --------------------------------------------------------------------------------- */

/* KEYS: queues, in the order to try. ARGV[1]: most messages to take from KEYS. ARGV[2], ARGV[3]
 * (optional): a body key already popped by BLPOP and its queue key, read and deleted first.
 * Returns the number of messages left in KEYS, then queue key, body pairs. Bodies that expired
 * are skipped; a direct entry (see script_send_many) is returned as it is, in place of a body. The queues are only counted when the batch filled up before they were all
 * emptied: otherwise every one answered LPOP with nothing, and 0 are left. */
static const char script_pop[] =
	"local out = {0}\n"
	"local n, max = 0, tonumber(ARGV[1])\n"
	"if ARGV[2] then\n"
	"  local body = redis.call('get', ARGV[2])\n"
	"  if body then\n"
	"    redis.call('del', ARGV[2])\n"
	"    out[2] = ARGV[3]\n"
	"    out[3] = body\n"
	"    n, max = 1, max + 1\n"
	"  end\n"
	"end\n"
	"local stopped = nil\n"
	"for i = 1, #KEYS do\n"
	"  if n >= max then stopped = i break end\n"
	"  repeat\n"
	"    local bk = redis.call('lpop', KEYS[i])\n"
	"    if not bk then break end\n"
	"    local body = bk\n"
	"    if string.byte(bk, 1) ~= 0 then\n"
	"      body = redis.call('get', bk)\n"
	"      if body then redis.call('del', bk) end\n"
	"    end\n"
	"    if body then\n"
	"      out[2 * n + 2] = KEYS[i]\n"
	"      out[2 * n + 3] = body\n"
	"      n = n + 1\n"
	"    end\n"
	"  until n >= max\n"
	"  if n >= max then stopped = i break end\n"
	"end\n"
	"if stopped then\n"
	"  local left = 0\n"
	"  for i = stopped, #KEYS do left = left + redis.call('llen', KEYS[i]) end\n"
	"  out[1] = left\n"
	"end\n"
	"return out\n";

/* One shard's part of a group send. KEYS: interface registry, global messages_count, global
 * channel_full_count. ARGV: expiry, body key base (key prefix + 24 hex digits), plain payload,
 * payload head ending in the key __asgi_channel__, payload head ending in the key
 * __laurel_multicast__, now, key prefix, statistics prefix, the number of multicast messages
 * the caller gathered, then for each: an interface's process prefix, its capacity, the message
 * (with its recipients), their number; then member, capacity pairs. A gathered message is
 * pushed as a direct entry while the interface is live, else with a body key (an interface
 * alive but no longer announced still reads it; a dead one's queue expires).
 * Members of one live interface's process channel get one message listing them all, pushed as a
 * direct entry (see script_send_many); every other member gets its own. Full queues are skipped. Returns the number of members reached. */
static const char script_group_send[] =
	"local qexpiry = tostring(tonumber(ARGV[1]) + 1)\n"
	"local now = tonumber(ARGV[6])\n"
	"local nowms = string.format('%.0f', now * 1000)\n"
	"local kp, sp = ARGV[7], ARGV[8]\n"
	"local seq, sent = 0, 0\n"
	"local counts, fulls, lens = {}, {}, {}\n"
	"local function mpstr(s)\n"
	"  local n = #s\n"
	"  if n < 32 then return string.char(0xa0 + n) .. s end\n"
	"  if n < 256 then return string.char(0xd9, n) .. s end\n"
	"  return string.char(0xda, math.floor(n / 256), n % 256) .. s\n"
	"end\n"
	"local function push(queue, cap, payload, direct)\n"
	"  local qk = kp .. queue\n"
	"  local len = lens[queue]\n"
	"  if len == nil then len = redis.call('llen', qk) end\n"
	"  if len >= cap then\n"
	"    lens[queue] = len\n"
	"    fulls[queue] = (fulls[queue] or 0) + 1\n"
	"    return false\n"
	"  end\n"
	"  if direct then\n"
	"    lens[queue] = redis.call('rpush', qk, '\\0' .. nowms .. '\\0' .. payload)\n"
	"    counts[queue] = (counts[queue] or 0) + 1\n"
	"    return true\n"
	"  end\n"
	"  seq = seq + 1\n"
	"  local bk = ARGV[2] .. string.format('%08x', seq)\n"
	"  redis.call('set', bk, payload, 'EX', ARGV[1])\n"
	"  lens[queue] = redis.call('rpush', qk, bk)\n"
	"  counts[queue] = (counts[queue] or 0) + 1\n"
	"  return true\n"
	"end\n"
	"local live, buckets, order = {}, {}, {}\n"
	"local nb = tonumber(ARGV[9])\n"
	"for i = 10, 9 + 4 * nb, 4 do\n"
	"  local p = ARGV[i]\n"
	"  local score = redis.call('zscore', KEYS[1], p)\n"
	"  local l = (score and tonumber(score) >= now) or false\n"
	"  live[p] = l\n"
	"  if push(p, tonumber(ARGV[i + 1]), ARGV[i + 2], l) then sent = sent + tonumber(ARGV[i + 3]) end\n"
	"end\n"
	"for i = 10 + 4 * nb, #ARGV, 2 do\n"
	"  local member, cap = ARGV[i], tonumber(ARGV[i + 1])\n"
	"  local bang = string.find(member, '!', 1, true)\n"
	"  if bang then\n"
	"    local p = string.sub(member, 1, bang)\n"
	"    local l = live[p]\n"
	"    if l == nil then\n"
	"      local score = redis.call('zscore', KEYS[1], p)\n"
	"      l = (score and tonumber(score) >= now) or false\n"
	"      live[p] = l\n"
	"    end\n"
	"    if l then\n"
	"      local b = buckets[p]\n"
	"      if not b then\n"
	"        b = {cap = cap, members = {}}\n"
	"        buckets[p] = b\n"
	"        order[#order + 1] = p\n"
	"      end\n"
	"      b.members[#b.members + 1] = member\n"
	"    elseif push(p, cap, ARGV[4] .. mpstr(member)) then\n"
	"      sent = sent + 1\n"
	"    end\n"
	"  elseif push(member, cap, ARGV[3]) then\n"
	"    sent = sent + 1\n"
	"  end\n"
	"end\n"
	"for _, p in ipairs(order) do\n"
	"  local ms = buckets[p].members\n"
	"  local n = #ms\n"
	"  local hdr\n"
	"  if n < 16 then hdr = string.char(0x90 + n)\n"
	"  elseif n < 65536 then hdr = string.char(0xdc, math.floor(n / 256), n % 256)\n"
	"  else hdr = string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,\n"
	"                         math.floor(n / 256) % 256, n % 256) end\n"
	"  local parts = {ARGV[5], hdr}\n"
	"  for j = 1, n do parts[#parts + 1] = mpstr(ms[j]) end\n"
	"  if push(p, buckets[p].cap, table.concat(parts), true) then sent = sent + n end\n"
	"end\n"
	"local total, totalfull = 0, 0\n"
	"for q, c in pairs(counts) do\n"
	"  redis.call('expire', kp .. q, qexpiry)\n"
	"  local k = sp .. q .. ':messages_count'\n"
	"  redis.call('incrby', k, c) redis.call('expire', k, 3600)\n"
	"  total = total + c\n"
	"end\n"
	"for q, c in pairs(fulls) do\n"
	"  local k = sp .. q .. ':channel_full_count'\n"
	"  redis.call('incrby', k, c) redis.call('expire', k, 3600)\n"
	"  totalfull = totalfull + c\n"
	"end\n"
	"if total > 0 then redis.call('incrby', KEYS[2], total) redis.call('expire', KEYS[2], 86400) end\n"
	"if totalfull > 0 then\n"
	"  redis.call('incrby', KEYS[3], totalfull) redis.call('expire', KEYS[3], 86400)\n"
	"end\n"
	"return sent\n";

/* Several sends on one shard. ARGV: expiry, key prefix, statistics prefix, global messages_count
 * key, global channel_full_count key, interface registry key, now (unix ms), then body key, queue
 * (without the key prefix), capacity, payload for each message. Each message is sent as the send
 * script would, except that one for the process queue of a live laurel interface is pushed whole
 * onto the queue as a direct entry ("\\0" now "\\0" payload: no body key, see
 * layer_direct_entry). Once a queue was found full, later messages for it are not tried, so a
 * retry keeps their order. Returns one status per message: 1 sent, 0 full, 2 not tried. */
static const char script_send_many[] =
	"local expiry, qexpiry = ARGV[1], tostring(tonumber(ARGV[1]) + 1)\n"
	"local kp, sp, reg, nowms = ARGV[2], ARGV[3], ARGV[6], ARGV[7]\n"
	"local now = tonumber(nowms) / 1000\n"
	"local out, blocked, counts, fulls, lens, direct = {}, {}, {}, {}, {}, {}\n"
	"local total, totalfull, m = 0, 0, 0\n"
	"for i = 8, #ARGV, 4 do\n"
	"  local body, q, cap = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])\n"
	"  local qk = kp .. q\n"
	"  m = m + 1\n"
	"  if blocked[q] then\n"
	"    out[m] = 2\n"
	"  else\n"
	"    local len = lens[q]\n"
	"    if len == nil then\n"
	"      len = redis.call('llen', qk)\n"
	"      local d = false\n"
	"      if string.byte(q, -1) == 33 then\n"
	"        local score = redis.call('zscore', reg, q)\n"
	"        d = (score and tonumber(score) >= now) or false\n"
	"      end\n"
	"      direct[q] = d\n"
	"    end\n"
	"    if len >= cap then\n"
	"      blocked[q] = true\n"
	"      fulls[q] = (fulls[q] or 0) + 1\n"
	"      totalfull = totalfull + 1\n"
	"      out[m] = 0\n"
	"    elseif direct[q] then\n"
	"      lens[q] = redis.call('rpush', qk, '\\0' .. nowms .. '\\0' .. ARGV[i + 3])\n"
	"      counts[q] = (counts[q] or 0) + 1\n"
	"      total = total + 1\n"
	"      out[m] = 1\n"
	"    else\n"
	"      redis.call('set', body, ARGV[i + 3], 'EX', expiry)\n"
	"      lens[q] = redis.call('rpush', qk, body)\n"
	"      counts[q] = (counts[q] or 0) + 1\n"
	"      total = total + 1\n"
	"      out[m] = 1\n"
	"    end\n"
	"  end\n"
	"end\n"
	"for q, c in pairs(counts) do\n"
	"  redis.call('expire', kp .. q, qexpiry)\n"
	"  local k = sp .. q .. ':messages_count'\n"
	"  redis.call('incrby', k, c) redis.call('expire', k, 3600)\n"
	"end\n"
	"for q, c in pairs(fulls) do\n"
	"  local k = sp .. q .. ':channel_full_count'\n"
	"  redis.call('incrby', k, c) redis.call('expire', k, 3600)\n"
	"end\n"
	"if total > 0 then redis.call('incrby', ARGV[4], total) redis.call('expire', ARGV[4], 86400) end\n"
	"if totalfull > 0 then\n"
	"  redis.call('incrby', ARGV[5], totalfull) redis.call('expire', ARGV[5], 86400)\n"
	"end\n"
	"return out\n";

/* ARGV: KEYS patterns whose keys are all deleted (asgi_redis's delprefix, for several). */
static const char script_flush[] =
	"for _, pat in ipairs(ARGV) do\n"
	"  local keys = redis.call('keys', pat)\n"
	"  for i = 1, #keys, 5000 do\n"
	"    redis.call('del', unpack(keys, i, math.min(i + 4999, #keys)))\n"
	"  end\n"
	"end\n"
	"return 1\n";

/* KEYS: the schedule's sorted set. ARGV: now (unix ms), most entries to take. Removes and
 * returns the entries due, earliest first, as member, score pairs, after the score of the
 * earliest entry left ("-1" if none). */
static const char script_take_due[] =
	"local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,\n"
	"                       tonumber(ARGV[2]))\n"
	"local members = {}\n"
	"for i = 1, #due, 2 do members[#members + 1] = due[i] end\n"
	"if #members > 0 then redis.call('zrem', KEYS[1], unpack(members)) end\n"
	"local left = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')\n"
	"table.insert(due, 1, left[2] or '-1')\n"
	"return due\n";

/* A group history (docs/recovery.md). KEYS: the history's hash (epoch, offset of the newest),
 * its list of messages. ARGV: the message, the size, the lifetime in seconds, an epoch for a new
 * history. Appends the message, trims the list to the size, sets both lifetimes. Returns the
 * epoch and the message's offset. */
static const char script_history_add[] =
	"local epoch = redis.call('hget', KEYS[1], 'epoch')\n"
	"if not epoch then\n"
	"  epoch = ARGV[4]\n"
	"  redis.call('del', KEYS[2])\n"
	"  redis.call('hset', KEYS[1], 'epoch', epoch, 'offset', 0)\n"
	"end\n"
	"local off = redis.call('hincrby', KEYS[1], 'offset', 1)\n"
	"redis.call('rpush', KEYS[2], ARGV[1])\n"
	"redis.call('ltrim', KEYS[2], -tonumber(ARGV[2]), -1)\n"
	"redis.call('expire', KEYS[1], ARGV[3])\n"
	"redis.call('expire', KEYS[2], ARGV[3])\n"
	"return {epoch, off}\n";

/* KEYS as for script_history_add. ARGV: the offset after which messages are wanted. Returns the
 * epoch ("" when there is no history), the newest offset, the oldest offset kept, then the
 * messages after ARGV[1] that are kept, oldest first. */
static const char script_history_read[] =
	"local m = redis.call('hmget', KEYS[1], 'epoch', 'offset')\n"
	"if not m[1] then return {'', 0, 1} end\n"
	"local top = tonumber(m[2])\n"
	"local first = top - redis.call('llen', KEYS[2]) + 1\n"
	"local from = tonumber(ARGV[1]) + 1\n"
	"if from < first then from = first end\n"
	"local out = {m[1], top, first}\n"
	"if from <= top then\n"
	"  local items = redis.call('lrange', KEYS[2], from - first, -1)\n"
	"  for i = 1, #items do out[#out + 1] = items[i] end\n"
	"end\n"
	"return out\n";

static const char *const script_source[SCRIPT_COUNT] = {
	script_pop,	  script_group_send,  script_flush,	   script_take_due,
	script_send_many, script_history_add, script_history_read};
static char script_sha[SCRIPT_COUNT][41];
static pthread_once_t script_sha_once = PTHREAD_ONCE_INIT;

static void hash_scripts(void)
{
	for (int i = 0; i < SCRIPT_COUNT; i++)
		util_sha1_hex(script_source[i], strlen(script_source[i]), script_sha[i]);
}

const char *layer_script_source(enum script_id id)
{
	return script_source[id];
}

const char *layer_script_sha(enum script_id id)
{
	pthread_once(&script_sha_once, hash_scripts);
	return script_sha[id];
}

/* --- Direct entries -------------------------------------------------------------------------- */

bool layer_direct_entry_time(const char *entry, size_t len, int64_t *sent_ms)
{
	if (len == 0 || entry[0] != '\0')
		return false;
	int64_t sent = 0;
	size_t i = 1;
	for (; i < len && i < 20 && entry[i] >= '0' && entry[i] <= '9'; i++)
		sent = sent * 10 + (entry[i] - '0');
	if (i == 1 || i >= len || entry[i] != '\0')
		return false;
	*sent_ms = sent;
	return true;
}

int layer_direct_entry(const char *entry, size_t len, int expiry_s, const char **payload,
		       size_t *plen)
{
	if (len == 0 || entry[0] != '\0')
		return 0;
	int64_t sent;
	if (!layer_direct_entry_time(entry, len, &sent))
		return -1;
	if ((int64_t)(util_wall_time() * 1000) - sent > (int64_t)expiry_s * 1000)
		return -1;
	const char *nul = memchr(entry + 1, '\0', len - 1);
	*payload = nul + 1;
	*plen = len - (size_t)(nul + 1 - entry);
	return 1;
}

/* --- The send script's arguments ----------------------------------------------------------- */

void layer_batch_add(struct layer_batch *b, const struct layer_config *cfg, const char *channel,
		     const char *hex, struct buf *payload)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 8;
		b->items = xrealloc(b->items, b->cap * sizeof(*b->items));
	}
	struct layer_batch_item *it = &b->items[b->n++];
	snprintf(it->body, sizeof(it->body), "%s%.32s", cfg->prefix, hex);
	snprintf(it->queue, sizeof(it->queue), "%.*s", (int)layer_queue_len(channel), channel);
	snprintf(it->capacity, sizeof(it->capacity), "%d", layer_capacity_for(cfg, channel));
	it->payload = *payload;
	buf_init(payload);
}

size_t layer_batch_command(struct layer_batch *b, const struct layer_config *cfg,
			   const char ***argv, size_t **lens)
{
	size_t argc = 10 + 4 * b->n;
	if (argc > b->argcap) {
		b->argcap = argc;
		b->argv = xrealloc(b->argv, argc * sizeof(*b->argv));
		b->lens = xrealloc(b->lens, argc * sizeof(*b->lens));
	}
	snprintf(b->expiry, sizeof(b->expiry), "%d", cfg->expiry);
	layer_key_global(cfg, "messages_count", b->glmsgs, sizeof(b->glmsgs));
	layer_key_global(cfg, "channel_full_count", b->glfull, sizeof(b->glfull));
	layer_key_interfaces(cfg, b->registry, sizeof(b->registry));
	snprintf(b->now, sizeof(b->now), "%lld", (long long)(util_wall_time() * 1000));
	const char *fixed[10] = {"EVALSHA",   layer_script_sha(SCRIPT_SEND_MANY),
				 "0",	      b->expiry,
				 cfg->prefix, cfg->stats_prefix,
				 b->glmsgs,   b->glfull,
				 b->registry, b->now};
	for (size_t k = 0; k < 10; k++) {
		b->argv[k] = fixed[k];
		b->lens[k] = strlen(fixed[k]);
	}
	for (size_t i = 0; i < b->n; i++) {
		const struct layer_batch_item *it = &b->items[i];
		const char *v[4] = {it->body, it->queue, it->capacity, it->payload.data};
		for (size_t k = 0; k < 4; k++) {
			b->argv[10 + 4 * i + k] = v[k];
			b->lens[10 + 4 * i + k] = k == 3 ? it->payload.len : strlen(v[k]);
		}
	}
	*argv = b->argv;
	*lens = b->lens;
	return argc;
}

void layer_batch_clear(struct layer_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		buf_fini(&b->items[i].payload);
	b->n = 0;
}

void layer_batch_fini(struct layer_batch *b)
{
	layer_batch_clear(b);
	free(b->items);
	free(b->argv);
	free(b->lens);
	memset(b, 0, sizeof(*b));
}

/* --- Error replies and outages --------------------------------------------------------------- */

/* Error codes (the first word) that mean "this server cannot serve us now". */
static const char *const outage_codes[] = {"READONLY",	 "LOADING",	"MASTERDOWN", "OOM",
					   "BUSY",	 "MISCONF",	"TRYAGAIN",   "CLUSTERDOWN",
					   "NOREPLICAS", "MASTER_DOWN", "UNBLOCKED"};
static const char *const denied_codes[] = {"NOAUTH", "WRONGPASS", "NOPERM"};

enum layer_error_kind layer_error_kind(const char *err)
{
	const char *const *outage = outage_codes, *const *denied = denied_codes;
	if (!err)
		return LAYER_ERR_OTHER;
	size_t n = strcspn(err, " ");
	for (size_t i = 0; i < ARRAY_SIZE(denied_codes); i++)
		if (n == strlen(denied[i]) && strncmp(err, denied[i], n) == 0)
			return LAYER_ERR_DENIED;
	for (size_t i = 0; i < ARRAY_SIZE(outage_codes); i++)
		if (n == strlen(outage[i]) && strncmp(err, outage[i], n) == 0)
			return LAYER_ERR_OUTAGE;
	/* Older servers say these with a plain ERR. */
	if (strncmp(err, "ERR invalid password", 20) == 0 ||
	    strncmp(err, "ERR AUTH", 8) == 0 || strncmp(err, "ERR Client sent AUTH", 20) == 0 ||
	    strstr(err, "invalid username-password"))
		return LAYER_ERR_DENIED;
	/* A command inside a script that the ACL forbids (Redis 7). */
	if (strstr(err, "can't run this command"))
		return LAYER_ERR_DENIED;
	if (strncmp(err, "ERR max number of clients", 25) == 0)
		return LAYER_ERR_OUTAGE;
	return LAYER_ERR_OTHER;
}

/* Whether a failure's text holds the server's own error (not just a broken connection). */
static bool names_error(const char *why)
{
	for (size_t i = 0; i < ARRAY_SIZE(outage_codes); i++)
		if (strstr(why, outage_codes[i]))
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(denied_codes); i++)
		if (strstr(why, denied_codes[i]))
			return true;
	return strstr(why, "ERR ") != NULL;
}

void layer_outage_begin(struct layer_outage *o, const char *desc, const char *why)
{
	bool named = names_error(why);
	if (o->down) {
		/* An outage that began with a closed connection (CLIENT KILL, a restart) may show
		 * its cause on the next attempt (WRONGPASS, LOADING): say it, once. */
		if (named && !o->named) {
			o->named = true;
			log_warn("%s still unusable: %s", desc, why);
		}
		return;
	}
	o->down = true;
	o->named = named;
	o->since_ms = util_now_ms();
	o->refused = 0;
	o->count++;
	log_warn("%s unusable: %s; retrying with backoff (100 ms to 2 s)", desc, why);
}

void layer_outage_end(struct layer_outage *o, const char *desc)
{
	if (!o->down)
		return;
	o->down = false;
	int64_t ms = util_now_ms() - o->since_ms;
	o->total_ms += ms;
	log_warn("%s reachable again after %lld.%03lld s; %llu requests refused meanwhile", desc,
		 (long long)(ms / 1000), (long long)(ms % 1000), (unsigned long long)o->refused);
}
