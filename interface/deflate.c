#include "interface/deflate.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* --- Negotiation (RFC 7692 §5, §7.1; the header's grammar is RFC 6455 §9.1) ------------------ */

struct cursor {
	const char *p;
};

static void skip_space(struct cursor *c)
{
	while (*c->p == ' ' || *c->p == '\t')
		c->p++;
}

static bool tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A token at the cursor: its length (0 if none). */
static size_t token(struct cursor *c, const char **start)
{
	*start = c->p;
	while (tchar((unsigned char)*c->p))
		c->p++;
	return (size_t)(c->p - *start);
}

#define VALUE_MAX 8 /* the longest parameter value kept ("15"): longer ones are invalid anyway */

/* A parameter's value: a token or a quoted-string (unquoted into v). Returns false on a syntax
 * error; sets *long_value when it did not fit v. */
static bool param_value(struct cursor *c, char *v, bool *long_value)
{
	size_t n = 0;
	*long_value = false;
	if (*c->p == '"') {
		c->p++;
		for (;;) {
			char ch = *c->p;
			if (ch == '\\' && c->p[1])
				ch = *++c->p;
			else if (ch == '"')
				break;
			if (!ch)
				return false;
			if (n + 1 < VALUE_MAX)
				v[n++] = ch;
			else
				*long_value = true;
			c->p++;
		}
		c->p++;
	} else {
		const char *s;
		size_t len = token(c, &s);
		if (!len)
			return false;
		if (len >= VALUE_MAX)
			*long_value = true;
		else
			memcpy(v, s, n = len);
	}
	v[n] = '\0';
	return true;
}

/* A window size parameter's value: "8".."15" exactly (§7.1.2.1: no leading zero), else -1. */
static int window_bits(const char *v)
{
	if (v[0] >= '8' && v[0] <= '9' && !v[1])
		return v[0] - '0';
	if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && !v[2])
		return 10 + v[1] - '0';
	return -1;
}

enum { SERVER_NCT, CLIENT_NCT, SERVER_BITS, CLIENT_BITS, NPARAMS };
static const char *const param_names[NPARAMS] = {
	"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
	"client_max_window_bits"};

/* Reads one offer at the cursor, up to the ',' after it or the end. Returns false on a syntax
 * error (the rest of this header value cannot be read reliably). *bits is the window to compress
 * with when the offer is permessage-deflate and acceptable, else 0; *asked_bits tells whether the
 * offer named server_max_window_bits (the response must then name it too). */
static bool read_offer(struct cursor *c, int *bits, bool *asked_bits)
{
	const char *name;
	skip_space(c);
	size_t nlen = token(c, &name);
	if (!nlen)
		return false;
	bool ok = nlen == 18 && strncasecmp(name, "permessage-deflate", 18) == 0;
	bool seen[NPARAMS] = {false};
	int server_bits = DEFLATE_MAX_BITS;
	*asked_bits = false;
	for (;;) {
		skip_space(c);
		if (*c->p != ';')
			break;
		c->p++;
		skip_space(c);
		const char *pname;
		size_t plen = token(c, &pname);
		if (!plen)
			return false;
		skip_space(c);
		char v[VALUE_MAX];
		bool has_value = false, long_value = false;
		if (*c->p == '=') {
			c->p++;
			skip_space(c);
			if (!param_value(c, v, &long_value))
				return false;
			has_value = true;
		}
		int which = -1;
		for (int i = 0; i < NPARAMS; i++)
			if (strlen(param_names[i]) == plen && strncasecmp(pname, param_names[i], plen) == 0)
				which = i;
		if (which < 0 || seen[which]) {
			ok = false; /* unknown or repeated: declined (§7, "MUST decline") */
			continue;
		}
		seen[which] = true;
		int wb = has_value && !long_value ? window_bits(v) : -1;
		switch (which) {
		case SERVER_NCT:
		case CLIENT_NCT:
			if (has_value)
				ok = false;
			break;
		case SERVER_BITS:
			if (wb < DEFLATE_MIN_BITS)
				ok = false; /* absent, invalid, or 8 (see DEFLATE_MIN_BITS) */
			server_bits = wb;
			*asked_bits = true;
			break;
		case CLIENT_BITS:
			/* Inflating with the largest window reads a stream made with any smaller one,
			 * so the response need not name it. */
			if (has_value && wb < 0)
				ok = false;
			break;
		}
	}
	skip_space(c);
	if (*c->p == ',')
		c->p++;
	else if (*c->p)
		return false;
	*bits = ok ? server_bits : 0;
	return true;
}

int deflate_negotiate(const char *const *values, size_t n, bool *named_bits)
{
	*named_bits = false;
	for (size_t i = 0; i < n; i++) {
		struct cursor c = {values[i]};
		for (;;) {
			skip_space(&c);
			while (*c.p == ',') { /* empty list elements are allowed (RFC 7230 §7) */
				c.p++;
				skip_space(&c);
			}
			if (!*c.p)
				break;
			int bits;
			if (!read_offer(&c, &bits, named_bits))
				break;
			if (bits)
				return bits;
		}
	}
	*named_bits = false;
	return 0;
}

void deflate_response(int bits, bool named_bits, char *resp)
{
	int len = snprintf(resp, DEFLATE_RESPONSE_MAX,
			   "permessage-deflate; server_no_context_takeover; "
			   "client_no_context_takeover");
	if (named_bits)
		snprintf(resp + len, (size_t)(DEFLATE_RESPONSE_MAX - len),
			 "; server_max_window_bits=%d", bits);
}

/* --- One message at a time --------------------------------------------------------------------- */

/* zlib allocates through laurel's allocator: out of memory aborts, as everywhere else. */
static voidpf zalloc(voidpf opaque, uInt items, uInt size)
{
	return xcalloc(items, size);
}

static void zfree(voidpf opaque, voidpf p)
{
	free(p);
}

/* memLevel 8 (zlib's default; 256 KiB for a 2^15 window): one per window size and thread. */
#define MEM_LEVEL 8

struct deflater {
	z_stream z;
	int level;
};

static _Thread_local struct deflater *deflaters[DEFLATE_VARIANTS];
static _Thread_local z_stream *inflater;

static z_stream *get_deflater(int bits, int level)
{
	struct deflater **d = &deflaters[bits - DEFLATE_MIN_BITS];
	if (*d && (*d)->level != level) {
		deflateEnd(&(*d)->z);
		free(*d);
		*d = NULL;
	}
	if (!*d) {
		struct deflater *n = xcalloc(1, sizeof(*n));
		n->z.zalloc = zalloc;
		n->z.zfree = zfree;
		if (deflateInit2(&n->z, level, Z_DEFLATED, -bits, MEM_LEVEL, Z_DEFAULT_STRATEGY) !=
		    Z_OK) {
			free(n);
			return NULL;
		}
		n->level = level;
		*d = n;
	} else {
		deflateReset(&(*d)->z);
	}
	return &(*d)->z;
}

size_t deflate_message(struct buf *out, const void *data, size_t len, int bits, int level)
{
	if (bits < DEFLATE_MIN_BITS || bits > DEFLATE_MAX_BITS || level < 1 || level > 9)
		return 0;
	z_stream *z = get_deflater(bits, level);
	if (!z)
		return 0;
	size_t start = out->len;
	z->next_in = (Bytef *)(uintptr_t)data;
	z->avail_in = 0;
	size_t left = len;
	int rc;
	do {
		/* deflateBound does not count the sync flush's empty block: a few bytes more. */
		if (!z->avail_in && left) {
			z->avail_in = left > UINT32_MAX ? UINT32_MAX : (uInt)left;
			left -= z->avail_in;
		}
		size_t room = deflateBound(z, z->avail_in) + 16;
		buf_reserve(out, room);
		room = out->cap - out->len - 1;
		z->next_out = (Bytef *)out->data + out->len;
		z->avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
		rc = deflate(z, left ? Z_NO_FLUSH : Z_SYNC_FLUSH);
		out->len = (size_t)((char *)z->next_out - out->data);
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			goto fail;
	} while (left || z->avail_in || z->avail_out == 0);
	size_t n = out->len - start;
	static const uint8_t marker[4] = {0, 0, 0xff, 0xff};
	if (n < 4 || memcmp(out->data + out->len - 4, marker, 4) != 0)
		goto fail;
	out->len -= 4;
	out->data[out->len] = '\0';
	return n - 4;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return 0;
}

int deflate_inflate(struct buf *out, const uint8_t *data, size_t len, size_t max)
{
	if (!inflater) {
		z_stream *z = xcalloc(1, sizeof(*z));
		z->zalloc = zalloc;
		z->zfree = zfree;
		if (inflateInit2(z, -DEFLATE_MAX_BITS) != Z_OK) {
			free(z);
			return DEFLATE_BAD_DATA;
		}
		inflater = z;
	} else {
		inflateReset(inflater);
	}
	z_stream *z = inflater;
	static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
	size_t start = out->len, left = len, chunk = 4096;
	bool tail_fed = false;
	z->next_in = (Bytef *)(uintptr_t)data;
	z->avail_in = 0;
	for (;;) {
		if (!z->avail_in && left) {
			z->avail_in = left > UINT32_MAX ? UINT32_MAX : (uInt)left;
			left -= z->avail_in;
		} else if (!z->avail_in && !tail_fed) {
			z->next_in = (Bytef *)(uintptr_t)tail;
			z->avail_in = sizeof(tail);
			tail_fed = true;
		}
		/* Room for at most max + 1 bytes in all: the byte past max is how "too big" shows. */
		size_t produced = out->len - start;
		size_t allowed = max + 1 - produced;
		size_t want = chunk < allowed ? chunk : allowed;
		buf_reserve(out, want);
		z->next_out = (Bytef *)out->data + out->len;
		z->avail_out = want > UINT32_MAX ? UINT32_MAX : (uInt)want;
		int rc = inflate(z, Z_SYNC_FLUSH);
		out->len = (size_t)((char *)z->next_out - out->data);
		out->data[out->len] = '\0';
		if (out->len - start > max)
			return DEFLATE_TOO_BIG;
		if (chunk < (1u << 20))
			chunk *= 2;
		if (rc == Z_STREAM_END) {
			/* A final block (BFINAL) may end a message; anything after it but the tail
			 * added here is not deflate data. */
			return left || (!tail_fed && z->avail_in) ? DEFLATE_BAD_DATA : 0;
		}
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return DEFLATE_BAD_DATA;
		if (tail_fed && !z->avail_in && z->avail_out)
			/* Everything read and all the output flushed: inflate must be between two
			 * blocks (a block cut short is still waiting for its data). One that claims
			 * exactly the 4 added bytes takes them as data and cannot be told apart, as
			 * in every implementation of RFC 7692 §7.2.2. */
			return (z->data_type & 128) ? 0 : DEFLATE_BAD_DATA;
		if (rc == Z_BUF_ERROR && z->avail_out && z->avail_in)
			return DEFLATE_BAD_DATA; /* no progress with input and room: cannot happen */
	}
}

void deflate_thread_cleanup(void)
{
	for (int i = 0; i < DEFLATE_VARIANTS; i++)
		if (deflaters[i]) {
			deflateEnd(&deflaters[i]->z);
			free(deflaters[i]);
			deflaters[i] = NULL;
		}
	if (inflater) {
		inflateEnd(inflater);
		free(inflater);
		inflater = NULL;
	}
}
