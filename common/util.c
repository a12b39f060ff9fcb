#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <sys/types.h>
#include <unistd.h>

static void oom(size_t n)
{
	fprintf(stderr, "laurel: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double util_wall_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void util_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("laurel: getrandom");
			abort();
		}
		p += r;
		n -= (size_t)r;
	}
}

void util_rng_init(struct util_rng *r)
{
	do
		util_random_bytes(r->s, sizeof(r->s));
	while (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]));
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t util_rng_next(struct util_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t util_rng_below(struct util_rng *r, uint64_t n)
{
	/* Rejection sampling keeps the result unbiased. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = util_rng_next(r);
	while (x >= limit);
	return x % n;
}

void util_rng_letters(struct util_rng *r, char *out, size_t n)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	for (size_t i = 0; i < n; i++)
		out[i] = letters[util_rng_below(r, 52)];
}

void util_rng_hex(struct util_rng *r, char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % 16 == 0)
			x = util_rng_next(r);
		out[i] = hex[x & 15];
		x >>= 4;
	}
}

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t util_crc32(const void *data, size_t len)
{
	/* The table is built on first use; concurrent first calls write identical values. */
	if (!crc_table[1])
		crc_table_init();
	const unsigned char *p = data;
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < len; i++)
		c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static uint32_t rol32(uint32_t x, int k)
{
	return (x << k) | (x >> (32 - k));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6;
		}
		uint32_t t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void util_sha1(const void *data, size_t len, unsigned char digest[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	const unsigned char *p = data;
	size_t n = len;
	while (n >= 64) {
		sha1_block(h, p);
		p += 64;
		n -= 64;
	}
	unsigned char last[128] = {0};
	memcpy(last, p, n);
	last[n] = 0x80;
	size_t total = n + 1 + 8 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		last[total - 1 - i] = (unsigned char)(bits >> (8 * i));
	sha1_block(h, last);
	if (total == 128)
		sha1_block(h, last + 64);
	for (int i = 0; i < 5; i++) {
		digest[4 * i] = (unsigned char)(h[i] >> 24);
		digest[4 * i + 1] = (unsigned char)(h[i] >> 16);
		digest[4 * i + 2] = (unsigned char)(h[i] >> 8);
		digest[4 * i + 3] = (unsigned char)h[i];
	}
}

void util_sha1_hex(const void *data, size_t len, char out[41])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[20];
	util_sha1(data, len, d);
	for (int i = 0; i < 20; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[40] = '\0';
}

static int base64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int util_base64_decode(const char *s, size_t len, void *out, size_t *n, char *err, size_t errlen)
{
	unsigned char *o = out;
	*n = 0;
	if (len % 4 != 0) {
		if (errlen)
			snprintf(err, errlen,
				 "its length (%zu) is not a multiple of 4 (pad the end with '=')",
				 len);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i += 4) {
		uint32_t acc = 0;
		int pad = 0;
		for (size_t j = 0; j < 4; j++) {
			unsigned char ch = (unsigned char)s[i + j];
			int v = base64_value(ch);
			if (ch == '=' && i + 4 == len && j >= 2) {
				pad++;
				acc <<= 6;
				continue;
			}
			if (ch == '=' || (pad && v >= 0)) {
				if (errlen)
					snprintf(err, errlen,
						 "'=' at character %zu: padding may only end the "
						 "text",
						 i + j + 1);
				return -EINVAL;
			}
			if (v < 0) {
				if (errlen && ch >= 0x20 && ch < 0x7f)
					snprintf(err, errlen,
						 "character %zu ('%c') is not in the base64 "
						 "alphabet",
						 i + j + 1, ch);
				else if (errlen)
					snprintf(err, errlen,
						 "character %zu (byte 0x%02x) is not in the base64 "
						 "alphabet",
						 i + j + 1, ch);
				return -EINVAL;
			}
			acc = acc << 6 | (uint32_t)v;
		}
		unsigned char bytes[3] = {(unsigned char)(acc >> 16), (unsigned char)(acc >> 8),
					  (unsigned char)acc};
		memcpy(o + *n, bytes, (size_t)(3 - pad));
		*n += (size_t)(3 - pad);
	}
	return 0;
}

void util_base64_encode(const void *data, size_t n, char *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
}

static bool numeric_id(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v > 0xfffffffeUL)
		return false;
	*out = v;
	return true;
}

int util_drop_privileges(const char *user, const char *group, char *err, size_t errlen)
{
	if (!user && !group)
		return 0;
	uid_t uid = getuid();
	gid_t gid = getgid();
	const char *uname = NULL;
	unsigned long n;
	if (user) {
		struct passwd *pw = getpwnam(user);
		if (!pw && numeric_id(user, &n))
			pw = getpwuid((uid_t)n);
		if (!pw && !numeric_id(user, &n)) {
			snprintf(err, errlen, "--user %s: no such user", user);
			return -1;
		}
		uid = pw ? pw->pw_uid : (uid_t)n;
		gid = pw ? pw->pw_gid : gid;
		uname = pw ? pw->pw_name : NULL;
	}
	if (group) {
		struct group *gr = getgrnam(group);
		if (!gr && !numeric_id(group, &n)) {
			snprintf(err, errlen, "--group %s: no such group", group);
			return -1;
		}
		gid = gr ? gr->gr_gid : (gid_t)n;
	}
	if (geteuid() != 0) {
		if ((!user || uid == geteuid()) && (!group || gid == getegid()))
			return 0; /* already there */
		snprintf(err, errlen, "--user/--group need the program to be started as root");
		return -1;
	}
	int rc = uname && !group ? initgroups(uname, gid) : setgroups(1, &gid);
	if (rc < 0 || setgid(gid) < 0 || (user && setuid(uid) < 0)) {
		snprintf(err, errlen, "cannot switch to user %s, group %s: %s", user ? user : "-",
			 group ? group : "-", strerror(errno));
		return -1;
	}
	if (user && uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "could switch back to root after dropping privileges");
		return -1;
	}
	return 0;
}

/* Overwrites with '*' the password of every URL in s ("scheme://user:PASSWORD@host...") and the
 * value of a "password=" query parameter. */
void util_scrub_secrets(char *s)
{
	for (char *p = strstr(s, "://"); p; p = strstr(p, "://")) {
		p += 3;
		size_t auth = strcspn(p, "/?#");
		char *at = NULL;
		for (size_t i = 0; i < auth; i++)
			if (p[i] == '@')
				at = p + i;
		char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
		if (colon)
			memset(colon + 1, '*', (size_t)(at - colon - 1));
	}
	for (char *q = strstr(s, "password="); q; q = strstr(q, "password=")) {
		q += strlen("password=");
		memset(q, '*', strcspn(q, "&#, "));
	}
}
